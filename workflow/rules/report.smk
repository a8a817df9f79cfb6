# Figures: training curves, R@K curves, the ablation chart and a qualitative grid.


rule figures_synth:
    input:
        logs=every_run("synth", f"{run_dir('synth')}/log.jsonl"),
        ranks=[
            f"{result_dir('synth', 'zeroshot', None)}/ranks.npz",
            *every_run("synth", f"{result_dir('synth')}/ranks.npz"),
        ],
        table=f"{RESULTS}/table4.csv",
        best=every_run("synth", f"{run_dir('synth')}/best.pt"),
        features=precomp(
            "synth", "test_ims.npy", "test_global_img.npy", "test_global_txt.npy"
        ),
        raw=synth_raw(),
        code=sources("figures"),
    output:
        report(
            expand(
                f"{RESULTS}/figures/{{name}}.png",
                name=["training_curves", "recall_at_k", "ablations", "qualitative"],
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
