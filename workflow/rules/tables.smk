# Tables: the paper's tables (CSV + Markdown) from every measured metrics.json.


rule tables:
    input:
        zeroshot=expand(
            f"{RESULTS}/{{dataset}}/zeroshot/metrics.json", dataset=config["datasets"]
        ),
        metrics=[
            m
            for d in config["datasets"]
            for m in every_run(d, f"{result_dir(d)}/metrics.json")
        ],
        raw=[synth_raw()] if "synth" in config["datasets"] else [],
        code=package_sources(
            "tables.py",
            "commands/tables.py",
            "reference/paper_results.csv",
            "reference/eccv_results.csv",
        ),
    output:
        expand(f"{RESULTS}/table{{n}}.{{ext}}", n=[1, 2, 3, 4], ext=["csv", "md"]),
    log:
        f"{LOGS}/tables.log",
    conda:
        ENV
    params:
        file=params_file(),
        seeds=config["seeds"],
        variants=VARIANTS,
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "aahr tables --params {params.file:q} --out {params.out:q} > {log:q} 2>&1"
