from memgen.runtime import log_to
from memgen.screenshots import report_screenshots

with log_to(snakemake.log[0]):
    for path in report_screenshots(snakemake.input.html, snakemake.output[0], chromium=snakemake.params.chromium):
        print(path)
