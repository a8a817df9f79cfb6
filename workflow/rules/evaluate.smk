# Evaluation: every row of the tables is a metrics.json under results/{dataset}/{variant}/.


rule evaluate_zeroshot_synth:
    input:
        features=precomp("synth", "test_global_img.npy", "test_global_txt.npy"),
        raw=synth_raw(),
        code=sources("evaluate"),
    output:
        metrics=f"{result_dir('synth', 'zeroshot', None)}/metrics.json",
        ranks=f"{result_dir('synth', 'zeroshot', None)}/ranks.npz",
    log:
        f"{LOGS}/evaluate_zeroshot_synth.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_zeroshot_synth.tsv"
    conda:
        ENV
    params:
        features=lambda w, input: os.path.dirname(input.features[0]),
        out=lambda w, output: os.path.dirname(output.metrics),
    shell:
        "aahr evaluate --zeroshot {params.features:q} --split test --positives {input.raw:q}"
        " --out {params.out:q} > {log:q} 2>&1"


rule evaluate_synth:
    input:
        best=f"{run_dir('synth')}/best.pt",
        features=precomp(
            "synth", "test_ims.npy", "test_global_img.npy", "test_global_txt.npy"
        ),
        raw=synth_raw(),
        code=sources("evaluate"),
    output:
        metrics=f"{result_dir('synth')}/metrics.json",
        ranks=f"{result_dir('synth')}/ranks.npz",
    log:
        f"{LOGS}/evaluate_synth_{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_synth_{{variant}}_seed{{seed}}.tsv"
    conda:
        ENV
    params:
        run=lambda w, input: os.path.dirname(input.best),
        features=lambda w, input: os.path.dirname(input.features[0]),
        out=lambda w, output: os.path.dirname(output.metrics),
    shell:
        "aahr evaluate --run {params.run:q} --features {params.features:q} --captions {input.raw:q}"
        " --split test --positives {input.raw:q} --out {params.out:q} > {log:q} 2>&1"
