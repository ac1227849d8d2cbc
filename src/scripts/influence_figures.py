from pathlib import Path

from memgen.influence.figures import write_figures
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    studies, figures = snakemake.params.studies, snakemake.params.figures
    inputs = {key: snakemake.input[key] for key in ("summary", "histograms", "removal", "consistency", "convergence")}
    inputs.update({key: dict(zip(studies, snakemake.input[key])) for key in ("scores", "pairs", "splits")})
    inputs["caches"] = {Path(p).stem: p for p in snakemake.input.caches}
    outputs = dict(snakemake.output)
    outputs["most_memorized"] = list(snakemake.output.most_memorized)
    write_figures(inputs, outputs, studies=studies, grid_studies=figures["most_memorized"],
                  influence_study=figures["influence"], per_class=figures["per_class"])
