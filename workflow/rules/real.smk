# The real datasets (f30k, coco): the field's precomputed region features, located (aahr download)
# and validated (aahr check-data) before anything reads them; the OpenCLIP global branch on the
# photos. Training and evaluation are the rules every dataset shares (train.smk, evaluate.smk).
# Nothing is downloaded unless the config says `download: true`: download_real then fetches what is
# public first (aahr download --what).


rule download_real:
    output:
        f"{DATA}/{{dataset}}/precomp/{{name}}",
    log:
        f"{LOGS}/download_{{dataset}}_{{name}}.log",
    wildcard_constraints:
        dataset=REAL,
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
    wildcard_constraints:
        dataset=REAL,
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
        f"{LOGS}/benchmarks/global_branch_{{dataset}}_{{split}}.tsv"
    wildcard_constraints:
        dataset=REAL,
    conda:
        ENV
    threads: config["numerics"]["threads"]
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    params:
        file=params_file(),
        numerics=config["numerics"],
        openclip=config["global_branch"]["openclip"],
        folder=lambda w, input: os.path.dirname(input.ids),
        images=image_root,
    shell:
        "aahr global-branch --params {params.file:q} --dataset {wildcards.dataset} --input {params.folder:q}"
        " --out {params.folder:q} --image-root {params.images:q} --splits {wildcards.split}"
        " --quiet > {log:q} 2>&1"
