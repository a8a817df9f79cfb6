# Tables: the paper's tables (CSV + Markdown) from every measured metrics.json.


rule tables:
    input:
        zeroshot=expand(
            f"{RESULTS}/{{dataset}}/zeroshot/metrics.json", dataset=config["datasets"]
        ),
        metrics=[
            m
            for d in config["datasets"]
            for m in every_run(d, f"{result_dir(d)}/metrics.json") + local_view_runs(d)
        ],
        regime=[f for d in config["datasets"] for f in regime_inputs(d)],
        ceiling=(
            [f"{RESULTS}/synth/ceiling.json"] if "synth" in config["datasets"] else []
        ),
        code=sources("tables"),
    output:
        expand(f"{RESULTS}/table{{n}}.{{ext}}", n=[1, 2, 3, 4], ext=["csv", "md"]),
        expand(f"{RESULTS}/regime.{{ext}}", ext=["csv", "md"]),
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


rule module_health:
    input:
        logs=[
            log
            for d in config["datasets"]
            if d == "synth"
            for log in every_run(d, f"{run_dir(d)}/log.jsonl")
        ],
        code=sources("health"),
    output:
        csv=f"{RESULTS}/module_health.csv",
        convergence=f"{RESULTS}/convergence.csv",
        figure=report(f"{RESULTS}/figures/module_health.png", category="Figures"),
    log:
        f"{LOGS}/module_health.log",
    conda:
        ENV
    params:
        file=params_file(),
        health=config["health"],
        out=lambda w, output: os.path.dirname(output.csv),
    shell:
        "aahr health --params {params.file:q} --dataset synth --out {params.out:q} > {log:q} 2>&1"


rule table5:
    input:
        metrics=sensitivity_runs(f"{result_dir('synth')}/metrics.json"),
        logs=sensitivity_runs(f"{run_dir('synth')}/log.jsonl"),
        code=sources("tables"),
    output:
        expand(f"{RESULTS}/table5.{{ext}}", ext=["csv", "md"]),
    log:
        f"{LOGS}/table5.log",
    conda:
        ENV
    params:
        file=params_file(),
        sensitivity=config["sensitivity"],
        health=config["health"],
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "aahr tables --table5 --params {params.file:q} --dataset synth --out {params.out:q} > {log:q} 2>&1"
