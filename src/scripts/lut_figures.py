import pandas as pd

from memgen.lut import figures as lf
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    i, o = snakemake.input, snakemake.output
    lf.plot_table1(pd.read_csv(i.table1), o.table1)
    lf.plot_table3(pd.read_csv(i.table3), o.table3)
    lf.plot_figure1(pd.read_csv(i.figure1), o.figure1)
    lf.plot_table4(pd.read_csv(i.table4), o.table4)
    lf.plot_ext_bits(pd.read_csv(i.ext_bits), o.ext_bits)
    lf.plot_ext_depth(pd.read_csv(i.ext_depth), o.ext_depth)
