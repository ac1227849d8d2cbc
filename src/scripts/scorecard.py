from memgen.runtime import log_to
from memgen.scorecard import write_scorecard

with log_to(snakemake.log[0]):
    card = write_scorecard({key: path for key, path in snakemake.input.items() if key != "code"}, snakemake.output[0])
    print(card.to_string())
