from memgen.lut import tables as lt
from memgen.runtime import log_to, write_csv

with log_to(snakemake.log[0]):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    read = lt.read_rows
    figure1_k = read(i.figure1_k)
    tables = {
        "table1": lt.build_table1(read(i.table1)),
        "table2": lt.build_table2(read(i.table2)),
        "table3": lt.build_table3(read(i.table3), depth=p.depth, ks=p.table3_ks),
        "table4": lt.build_table4(read(i.table4), k=p.table4_k, depth=p.depth),
        "figure1": lt.build_figure1(figure1_k[figure1_k["k"].isin(p.figure1_ks)],
                                    read(i.figure1_depth) if len(i.figure1_depth) else None, depth=p.depth,
                                    depth_k=p.figure1_depth_k, depths=p.figure1_depths),
        "ext_bits": lt.build_ext_bits(read(i.ext_bits), depth=p.depth, ks=p.ext_bits_ks,
                                      codings=p.ext_codings),
        "ext_depth": lt.build_ext_depth(read(i.ext_depth)),
    }
    for name, table in tables.items():
        print(f"{name}:\n{table.to_string()}\n")
        write_csv(o[name], table)
