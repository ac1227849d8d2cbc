from pathlib import Path

import pandas as pd

from memgen.report import provenance, render_notebooks
from memgen.runtime import log_to, quick_device, write_json

with log_to(snakemake.log[0]):
    config = snakemake.config
    prov = provenance(config, pd.read_csv(snakemake.input.runtimes), Path(snakemake.scriptdir).parents[1],
                      quick_device(config.get("device", "auto")))
    write_json(snakemake.output.provenance, prov)
    sections = []
    for name, template in zip(snakemake.params.sections, snakemake.input.templates):
        prefix = f"{name}__"
        parameters = {key[len(prefix):]: value for key, value in snakemake.input.items() if key.startswith(prefix)}
        sections.append((template, {**parameters, "provenance": snakemake.output.provenance}))
    render_notebooks(sections, snakemake.output.notebook, snakemake.output.html,
                     title=f"memgen study report ({prov['preset']['name']} preset)")
