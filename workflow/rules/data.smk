# Data: generation of the embedded synth dataset (the real datasets' download rule is in real.smk).


rule generate_synth:
    input:
        sources("generate"),
    output:
        directory(synth_raw()),
    log:
        f"{LOGS}/generate_synth.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate_synth.tsv"
    conda:
        ENV
    threads: workflow.cores
    params:
        file=params_file(),
        synth=config["synth"],
        data_seed=config["data_seed"],
    shell:
        "aahr generate --params {params.file:q} --out {output:q} --workers {threads} --quiet > {log:q} 2>&1"
