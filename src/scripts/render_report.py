from memgen.report import render_notebooks
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    sections = []
    for name, template in zip(snakemake.params.sections, snakemake.input.templates):
        prefix = f"{name}__"
        parameters = {key[len(prefix):]: value for key, value in snakemake.input.items() if key.startswith(prefix)}
        sections.append((template, parameters))
    render_notebooks(sections, snakemake.output.notebook, snakemake.output.html)
