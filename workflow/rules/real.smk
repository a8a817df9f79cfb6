# The real datasets (f30k, coco): the field's precomputed region features, located (aahr download)
# and validated (aahr check-data) before anything reads them; the OpenCLIP global branch on the
# photos; then the same training and evaluation as synth. Nothing is downloaded unless the config
# says `download: true`: download_real then fetches what is public first (aahr download --what).


rule download_real:
    output:
        f"{DATA}/{{dataset}}/precomp/{{name}}",
    log:
        f"{LOGS}/download_{{dataset}}_{{name}}.log",
    conda:
        ENV
    params:
        root=lambda w, output: data_root_of(output[0]),
        fetch="--what features,images,weights" if config["download"] else "",
    shell:
        "aahr download --dataset {wildcards.dataset} --data-root {params.root:q} {params.fetch}"
        " > {log:q} 2>&1"


rule check_data_real:
    input:
        real_inputs,
        code=sources("check-data"),
    output:
        f"{RESULTS}/{{dataset}}/check_data.json",
    log:
        f"{LOGS}/check_data_{{dataset}}.log",
    conda:
        ENV
    params:
        root=lambda w, input: data_root_of(input[0]),
        dim=config["real"]["feature_dim"],
    shell:
        "aahr check-data --dataset {wildcards.dataset} --data-root {params.root:q} --feature-dim {params.dim}"
        " --json {output:q} > {log:q} 2>&1"


rule global_branch_real:
    input:
        check=f"{RESULTS}/{{dataset}}/check_data.json",
        ids=f"{DATA}/{{dataset}}/precomp/{{split}}_ids.txt",
        caps=f"{DATA}/{{dataset}}/precomp/{{split}}_caps.txt",
        mapping=id_mapping,
        code=sources("global-branch"),
    output:
        img=f"{DATA}/{{dataset}}/precomp/{{split}}_global_img.npy",
        txt=f"{DATA}/{{dataset}}/precomp/{{split}}_global_txt.npy",
    log:
        f"{LOGS}/global_branch_{{dataset}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/global_branch_{{dataset}}_{{split}}.tsv"
    conda:
        ENV
    threads: workflow.cores
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    params:
        file=params_file(),
        openclip=config["global_branch"]["openclip"],
        folder=lambda w, input: os.path.dirname(input.ids),
        images=image_root,
    shell:
        "aahr global-branch --params {params.file:q} --dataset {wildcards.dataset} --input {params.folder:q}"
        " --out {params.folder:q} --image-root {params.images:q} --splits {wildcards.split}"
        " --threads {threads} --quiet > {log:q} 2>&1"


rule evaluate_zeroshot_real:
    input:
        check=f"{RESULTS}/{{dataset}}/check_data.json",
        features=lambda w: precomp(
            w.dataset,
            "{split}_global_img.npy",
            "{split}_global_txt.npy",
            splits=[test_split(w)],
        ),
        code=sources("evaluate"),
    output:
        metrics=f"{result_dir('{dataset}', 'zeroshot', None)}/metrics.json",
        ranks=f"{result_dir('{dataset}', 'zeroshot', None)}/ranks.npz",
    log:
        f"{LOGS}/evaluate_zeroshot_{{dataset}}.log",
    conda:
        ENV
    params:
        split=test_split,
        features=lambda w, input: os.path.dirname(input.features[0]),
        out=lambda w, output: os.path.dirname(output.metrics),
    shell:
        "aahr evaluate --zeroshot {params.features:q} --split {params.split}"
        " --out {params.out:q} > {log:q} 2>&1"


rule train_real:
    input:
        # train and dev only: model selection never sees the test split
        check=f"{RESULTS}/{{dataset}}/check_data.json",
        features=lambda w: precomp(
            w.dataset,
            "{split}_ims.npy",
            "{split}_caps.txt",
            "{split}_global_img.npy",
            "{split}_global_txt.npy",
            splits=["train", "dev"],
        ),
        code=sources("train"),
    output:
        best=f"{run_dir('{dataset}')}/best.pt",
        log=f"{run_dir('{dataset}')}/log.jsonl",
        metrics=f"{run_dir('{dataset}')}/metrics.json",
    log:
        f"{LOGS}/train_{{dataset}}_{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_{{dataset}}_{{variant}}_seed{{seed}}.tsv"
    conda:
        ENV
    threads: workflow.cores
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    params:
        file=params_file(),
        switches=lambda w: config["variants"][w.variant],
        train=config["train"],
        model=config["model"],
        losses=config["losses"],
        text=config["text"],
        out=lambda w, output: os.path.dirname(output.best),
        features=lambda w, input: os.path.dirname(input.features[0]),
    shell:
        "aahr train --params {params.file:q} --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --features {params.features:q} --captions {params.features:q}"
        " --out {params.out:q} --resume-matching --threads {threads} --quiet > {log:q} 2>&1"


rule evaluate_real:
    input:
        best=f"{run_dir('{dataset}')}/best.pt",
        ids=lambda w: precomp(w.dataset, "{split}_ids.txt", splits=[test_split(w)]),
        features=lambda w: precomp(
            w.dataset,
            "{split}_ims.npy",
            "{split}_caps.txt",
            "{split}_global_img.npy",
            "{split}_global_txt.npy",
            splits=[test_split(w)],
        ),
        eccv=lambda w: (
            precomp(w.dataset, "testall_capids.txt")
            if config["real"][w.dataset]["eccv"]
            else []
        ),
        code=sources("evaluate"),
    output:
        metrics=f"{result_dir('{dataset}')}/metrics.json",
        ranks=f"{result_dir('{dataset}')}/ranks.npz",
    log:
        f"{LOGS}/evaluate_{{dataset}}_{{variant}}_seed{{seed}}.log",
    conda:
        ENV
    params:
        split=test_split,
        run=lambda w, input: os.path.dirname(input.best),
        features=lambda w, input: os.path.dirname(input.features[0]),
        out=lambda w, output: os.path.dirname(output.metrics),
        eccv=lambda w, input: (
            f"--image-ids {input.ids} --caption-ids {input.eccv[0]}"
            if input.eccv
            else ""
        ),
    shell:
        "aahr evaluate --run {params.run:q} --features {params.features:q} --split {params.split}"
        " {params.eccv} --out {params.out:q} > {log:q} 2>&1"
