# Evaluation: every row of the tables is a metrics.json under results/{dataset}/{variant}/.


rule evaluate_zeroshot:
    input:
        unpack(zeroshot_inputs),
        code=sources("evaluate"),
    output:
        metrics=f"{result_dir('{dataset}', 'zeroshot', None)}/metrics.json",
        ranks=f"{result_dir('{dataset}', 'zeroshot', None)}/ranks.npz",
    log:
        f"{LOGS}/evaluate_zeroshot_{{dataset}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate_zeroshot_{{dataset}}.tsv"
    conda:
        ENV
    params:
        file=params_file(),
        numerics=config["numerics"],
        split=test_split,
        features=folder("features"),
        positives=lambda w, input: (
            f"--positives {input.raw}" if w.dataset == "synth" else ""
        ),
        out=lambda w, output: os.path.dirname(output.metrics),
    shell:
        "aahr evaluate --params {params.file:q} --zeroshot {params.features:q} --split {params.split} {params.positives}"
        " --out {params.out:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(matcher_inputs(lambda w: [test_split(w)])),
        unpack(eccv_inputs),
        best=f"{run_dir('{dataset}')}/best.pt",
        code=sources("evaluate"),
    output:
        metrics=f"{result_dir('{dataset}')}/metrics.json",
        ranks=f"{result_dir('{dataset}')}/ranks.npz",
    log:
        f"{LOGS}/evaluate_{{dataset}}_{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate_{{dataset}}_{{variant}}_seed{{seed}}.tsv"
    conda:
        ENV
    params:
        file=params_file(),
        numerics=config["numerics"],
        split=test_split,
        run=lambda w, input: os.path.dirname(input.best),
        features=folder("features"),
        labels=evaluation_labels,
        out=lambda w, output: os.path.dirname(output.metrics),
    shell:
        "aahr evaluate --params {params.file:q} --run {params.run:q} --features {params.features:q} --split {params.split}"
        " {params.labels} --out {params.out:q} > {log:q} 2>&1"


rule evaluate_zeroshot_dev:
    # the regime (results/regime.csv) reads the dev split only
    input:
        features=lambda w: precomp(
            w.dataset,
            "{split}_global_img.npy",
            "{split}_global_txt.npy",
            splits=["dev"],
        ),
        code=sources("evaluate"),
    output:
        metrics=f"{result_dir('{dataset}', 'zeroshot_dev', None)}/metrics.json",
        ranks=f"{result_dir('{dataset}', 'zeroshot_dev', None)}/ranks.npz",
    log:
        f"{LOGS}/evaluate_zeroshot_dev_{{dataset}}.log",
    conda:
        ENV
    params:
        file=params_file(),
        numerics=config["numerics"],
        features=folder("features"),
        out=lambda w, output: os.path.dirname(output.metrics),
    shell:
        "aahr evaluate --params {params.file:q} --zeroshot {params.features:q} --split dev"
        " --out {params.out:q} > {log:q} 2>&1"


rule evaluate_local_view:
    # aahr's own checkpoint scored with its local view alone: what the global view adds at inference
    input:
        unpack(matcher_inputs(lambda w: [test_split(w)], variant="aahr")),
        unpack(eccv_inputs),
        best=f"{run_dir('{dataset}', 'aahr')}/best.pt",
        code=sources("evaluate"),
    output:
        metrics=f"{result_dir('{dataset}', LOCAL_VIEW)}/metrics.json",
        ranks=f"{result_dir('{dataset}', LOCAL_VIEW)}/ranks.npz",
    log:
        f"{LOGS}/evaluate_local_view_{{dataset}}_seed{{seed}}.log",
    conda:
        ENV
    params:
        file=params_file(),
        numerics=config["numerics"],
        split=test_split,
        run=lambda w, input: os.path.dirname(input.best),
        features=folder("features"),
        labels=evaluation_labels,
        out=lambda w, output: os.path.dirname(output.metrics),
    shell:
        "aahr evaluate --params {params.file:q} --run {params.run:q} --view local --features {params.features:q}"
        " --split {params.split} {params.labels} --out {params.out:q} > {log:q} 2>&1"
