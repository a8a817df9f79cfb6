# Features: bottom-up region features and the frozen global branch (the CLIP role), from raw images.


rule regions_synth:
    input:
        raw=synth_raw(),
        code=sources("regions"),
    output:
        features=precomp("synth", "{split}_ims.npy", "{split}_boxes.npy"),
        summary=f"{DATA}/synth/precomp/regions.json",
        model=f"{DATA}/synth/models/region_extractor.pt",
    log:
        f"{LOGS}/regions_synth.log",
    benchmark:
        f"{LOGS}/benchmarks/regions_synth.tsv"
    conda:
        ENV
    threads: config["numerics"]["threads"]
    params:
        file=params_file(),
        numerics=config["numerics"],
        regions=config["regions"],
        data_seed=config["data_seed"],
        splits=" ".join(MATCH_SPLITS),
        out=lambda w, output: os.path.dirname(output.summary),
        models=lambda w, output: os.path.dirname(output.model),
    shell:
        "aahr regions --params {params.file:q} --dataset synth --input {input.raw:q}"
        " --out {params.out:q} --models {params.models:q} --splits {params.splits}"
        " --quiet > {log:q} 2>&1"


rule global_branch_synth:
    input:
        raw=synth_raw(),
        code=sources("global-branch"),
    output:
        features=precomp("synth", "{split}_global_img.npy", "{split}_global_txt.npy"),
        summary=f"{DATA}/synth/precomp/global_branch.json",
        model=f"{DATA}/synth/models/global_dual_encoder.pt",
    log:
        f"{LOGS}/global_branch_synth.log",
    benchmark:
        f"{LOGS}/benchmarks/global_branch_synth.tsv"
    conda:
        ENV
    threads: config["numerics"]["threads"]
    params:
        file=params_file(),
        numerics=config["numerics"],
        global_branch=config["global_branch"],
        data_seed=config["data_seed"],
        splits=" ".join(MATCH_SPLITS),
        out=lambda w, output: os.path.dirname(output.summary),
        models=lambda w, output: os.path.dirname(output.model),
    shell:
        "aahr global-branch --params {params.file:q} --dataset synth --input {input.raw:q}"
        " --out {params.out:q} --models {params.models:q} --splits {params.splits}"
        " --quiet > {log:q} 2>&1"
