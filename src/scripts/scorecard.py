import pandas as pd

from memgen.influence.tables import scorecard_rows as influence_rows
from memgen.lut.tables import scorecard_rows as lut_rows
from memgen.retrieval.tables import scorecard_rows as retrieval_rows
from memgen.runtime import log_to
from memgen.scorecard import write_scorecard

with log_to(snakemake.log[0]):
    i, p = snakemake.input, snakemake.params
    lut = {key.removeprefix("lut_"): pd.read_csv(path) for key, path in i.items() if key.startswith("lut_")}
    card = write_scorecard(snakemake.output[0], lut_rows(lut) if lut else [],
                           retrieval_rows(pd.read_csv(i.retrieval_table1)) if "retrieval_table1" in i.keys() else [],
                           influence_rows(pd.read_csv(i.influence_last_layer)) if "influence_last_layer" in i.keys() else [],
                           scales=dict(p.scales), preset_scale=p.preset_scale)
    print(card.to_string())
