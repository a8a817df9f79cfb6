# Training: one run per dataset x variant x seed (each variant a set of switches in params.yaml).


rule train:
    input:
        # train and dev only: model selection never sees the test split
        unpack(matcher_inputs(lambda w: ["train", "dev"])),
        code=sources("train"),
    output:
        best=f"{run_dir('{dataset}')}/best.pt",
        log=f"{run_dir('{dataset}')}/log.jsonl",
        metrics=f"{run_dir('{dataset}')}/metrics.json",
    log:
        f"{LOGS}/train_{{dataset}}_{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train_{{dataset}}_{{variant}}_seed{{seed}}.tsv"
    priority: train_priority
    conda:
        ENV
    threads: config["numerics"]["threads"]
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    params:
        file=params_file(),
        numerics=config["numerics"],
        settings=run_settings,
        train=config["train"],
        model=config["model"],
        losses=config["losses"],
        text=config["text"],
        out=lambda w, output: os.path.dirname(output.best),
        features=folder("features"),
        captions=captions_folder,
    shell:
        "aahr train --params {params.file:q} --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --features {params.features:q} --captions {params.captions:q}"
        " --out {params.out:q} --resume-matching --quiet > {log:q} 2>&1"
