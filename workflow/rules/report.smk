# Figures: training curves, R@K curves and the ablation chart, from the measured outputs.


rule figures_synth:
    input:
        logs=expand(f"{DATA}/synth/runs/{{variant}}/log.jsonl", variant=VARIANTS),
        sims=expand(
            f"{RESULTS}/synth/{{method}}/sims.npy", method=["zeroshot", *VARIANTS]
        ),
        table=f"{RESULTS}/table4.csv",
        raw=synth_raw(),
        code=package_sources("figures.py", "commands/figures.py"),
    output:
        report(
            expand(
                f"{RESULTS}/figures/{{name}}.png",
                name=["training_curves", "recall_at_k", "ablations"],
            ),
            category="Figures",
        ),
    log:
        f"{LOGS}/figures_synth.log",
    conda:
        ENV
    params:
        file=params_file(),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "aahr figures --params {params.file:q} --dataset synth --out {params.out:q} > {log:q} 2>&1"
