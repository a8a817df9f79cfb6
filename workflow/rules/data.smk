# Data: generation of the embedded synth dataset (the real datasets' download rule is in real.smk).


rule generate_synth:
    input:
        sources("generate"),
    output:
        raw=directory(synth_raw()),
        ceiling=f"{RESULTS}/synth/ceiling.json",  # the tables' copy, kept in git
    log:
        f"{LOGS}/generate_synth.log",
    benchmark:
        f"{LOGS}/benchmarks/generate_synth.tsv"
    conda:
        ENV
    # the one job that takes every core: its rendering processes draw each image from its own seed,
    # so the bytes do not depend on how many there are (tests/test_workflow.py checks it)
    threads: workflow.cores
    params:
        file=params_file(),
        synth=config["synth"],
        data_seed=config["data_seed"],
    shell:
        "aahr generate --params {params.file:q} --out {output.raw:q} --ceiling {output.ceiling:q}"
        " --workers {threads} --quiet > {log:q} 2>&1"
