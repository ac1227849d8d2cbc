from memgen.report import render_notebook
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    parameters = {key: value for key, value in snakemake.input.items() if key not in ("notebook", "code")}
    render_notebook(snakemake.input.notebook, snakemake.output.notebook, snakemake.output.html, parameters)
