# Training: one run per dataset x variant x seed (each variant a set of switches in params.yaml).


rule train_synth:
    input:
        # train and dev only: model selection never sees the test split
        features=precomp(
            "synth",
            "{split}_ims.npy",
            "{split}_global_img.npy",
            "{split}_global_txt.npy",
            splits=["train", "dev"],
        ),
        raw=synth_raw(),
        code=sources("train"),
    output:
        best=f"{run_dir('synth')}/best.pt",
        log=f"{run_dir('synth')}/log.jsonl",
        metrics=f"{run_dir('synth')}/metrics.json",
    log:
        f"{LOGS}/train_synth_{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_synth_{{variant}}_seed{{seed}}.tsv"
    conda:
        ENV
    threads: workflow.cores
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    params:
        file=params_file(),
        settings=run_settings,
        train=config["train"],
        model=config["model"],
        losses=config["losses"],
        text=config["text"],
        out=lambda w, output: os.path.dirname(output.best),
        features=lambda w, input: os.path.dirname(input.features[0]),
    shell:
        "aahr train --params {params.file:q} --dataset synth --variant {wildcards.variant} --seed {wildcards.seed}"
        " --features {params.features:q} --captions {input.raw:q} --out {params.out:q}"
        " --resume-matching --threads {threads} --quiet > {log:q} 2>&1"
