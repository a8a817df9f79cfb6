# Helpers shared by the rules: the validated config, paths, and each rule's code input (the package
# files its command imports, so that editing one reruns the rule).
import os
from pathlib import Path

import yaml

from aahr.config import resolve_variant, validate_params
from aahr.paths import default_image_root, find_id_mapping
from aahr.sources import command_sources

validate_params(
    config, source="the Snakemake config (params.yaml and any --configfile/--config)"
)

DATA = config["data_root"]
RESULTS = config["results_root"]
LOGS = f"{RESULTS}/logs"
ENV = "../../environment.yml"  # the one environment every rule runs in (--sdm conda)
PACKAGE_DIR = Path(
    "src/aahr"
)  # this project's package sources (Snakemake runs in its root)


def sources(*commands):
    """A rule's code input: every package file that `aahr <command>` imports (aahr.sources)."""
    return command_sources(*commands, package_dir=PACKAGE_DIR)


def params_file():
    """The effective config (params.yaml plus any --configfile / --config), for `aahr --params`.

    One fixed path (Snakemake's lock allows one run per working directory), rewritten only when
    the content changes; rules list the config sections they use as params, so a change reruns
    only the rules it concerns."""
    text = yaml.safe_dump(config, sort_keys=True)
    path = Path(".snakemake/aahr-params.yaml")
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


VARIANTS = list(config["variants"])  # Table 4's rows
LOCAL_VIEW = (
    "aahr_local"  # aahr's checkpoint scored with its local view alone (a Table 4 row)
)
SENSITIVITY = list(config["sensitivity"])  # Table 5's rows (make study)
SEEDS = config["seeds"]


wildcard_constraints:
    variant="|".join(VARIANTS + SENSITIVITY),
    seed=r"\d+",


# Splits a matcher reads: train (training), dev (model selection), test (the tables).
MATCH_SPLITS = ["train", "dev", "test"]


def synth_raw():
    return f"{DATA}/synth/raw"


def run_dir(dataset, variant="{variant}", seed="{seed}"):
    """A training run's folder (aahr.paths.run_dir)."""
    return f"{DATA}/{dataset}/runs/{variant}/seed{seed}"


def result_dir(dataset, method="{variant}", seed="{seed}"):
    """A method's test metrics (aahr.paths.result_dir); the zero-shot row has no seed."""
    parts = [RESULTS, dataset, method] + ([] if seed is None else [f"seed{seed}"])
    return "/".join(parts)


def figures():
    """The figures (drawn for synth, the dataset with exact positives and images to show)."""
    if "synth" not in config["datasets"]:
        return []
    return [f"{RESULTS}/figures/ablations.png", f"{RESULTS}/module_health.csv"]


def every_run(dataset, pattern):
    """`pattern` (with {variant} and {seed}) for every variant x seed."""
    return expand(pattern, variant=VARIANTS, seed=SEEDS)


def local_view_runs(dataset):
    """aahr's checkpoints scored with the local view alone (when aahr has a global branch)."""
    v = config["variants"].get("aahr")
    if v is None or not v["global_branch"]:
        return []
    return expand(f"{result_dir(dataset, LOCAL_VIEW)}/metrics.json", seed=SEEDS)


def regime_inputs(dataset):
    """What the regime reads (the dev split only): the zero-shot dev scores and the training runs'
    dev metrics of the local model and the baseline."""
    runs = [v for v in ("no_global", "gpo") if v in VARIANTS]
    return [f"{result_dir(dataset, 'zeroshot_dev', None)}/metrics.json"] + expand(
        f"{run_dir(dataset)}/metrics.json", variant=runs, seed=SEEDS
    )


def sensitivity_runs(pattern):
    """`pattern` for aahr and every Table 5 row, on the sensitivity seeds."""
    return expand(
        pattern, variant=["aahr"] + SENSITIVITY, seed=config["sensitivity_seeds"]
    )


def train_priority(wildcards):
    """Longest runs first, so that on a few cores the last job left alone is a short one: a run's
    cost grows with its epochs and with the modules it trains (the relation GNN, the MoCo key
    encoder, the global branch's fusion and the fragment transformer each add to a step).
    """
    params = resolve_variant(config, wildcards.variant)
    switches = params["variants"][wildcards.variant]
    parts = ("relation", "moco", "global_branch", "fragment_transformer")
    return params["train"]["epochs"] * (1 + sum(bool(switches[k]) for k in parts))


def run_settings(wildcards):
    """What a run trains with: its switches and, for a Table 5 row, the settings it moves."""
    rows = config["sensitivity"]
    if wildcards.variant in rows:
        row = rows[wildcards.variant]
        return {"switches": config["variants"][row["base"]], "set": row["set"]}
    return {"switches": config["variants"][wildcards.variant]}


def precomp(dataset, *names, splits=MATCH_SPLITS):
    """Files of a dataset's feature folder; `{split}` in a name expands over `splits`."""
    return [
        f"{DATA}/{dataset}/precomp/{n}".format(split=split)
        for n in names
        for split in (splits if "{split}" in n else [None])
    ]


# Every dataset runs the same training and evaluation rules; the real ones (rules/real.smk) also
# have their own download, check and OpenCLIP rules.
REAL = "f30k|coco"


wildcard_constraints:
    dataset=f"synth|{REAL}",
    split="train|dev|test|testall",
    name=r"(train|dev|test|testall)_(ims\.npy|caps\.txt|ids\.txt)|id_mapping\.json|testall_capids\.txt",


def real_precomp(dataset, *names, splits=None):
    """Files of a real dataset's feature folder; `{split}` expands over train, dev and its test split."""
    test = config["real"][dataset]["test_split"]
    return precomp(dataset, *names, splits=splits or ["train", "dev", test])


def real_inputs(wildcards):
    """Every file a real dataset must provide (the ECCV bridge only where it is evaluated)."""
    d = wildcards.dataset
    files = real_precomp(d, "{split}_ims.npy", "{split}_caps.txt", "{split}_ids.txt")
    files += [id_mapping(wildcards)]
    if config["real"][d]["eccv"]:
        files += precomp(d, "testall_capids.txt")
    return files


def data_root_of(path):
    """{data_root} of a file {data_root}/{dataset}/precomp/{name}."""
    return os.path.dirname(os.path.dirname(os.path.dirname(path)))


def test_split(wildcards):
    """The split the tables report: synth's test, a real dataset's test or testall."""
    if wildcards.dataset == "synth":
        return "test"
    return config["real"][wildcards.dataset]["test_split"]


def matcher_inputs(splits, variant=None):
    """The inputs of a training or evaluation job on `splits(wildcards)`: synth's features and raw
    folder (captions, exact positives); a real dataset's checked feature folder (captions inside).
    `variant`: the run's variant when the rule has no {variant} wildcard.
    """

    def inputs(w):
        names = ["{split}_ims.npy"]
        v = variant or w.variant
        # the global branch's embeddings only for a variant that reads them
        if resolve_variant(config, v)["variants"][v]["global_branch"]:
            names += ["{split}_global_img.npy", "{split}_global_txt.npy"]
        if w.dataset == "synth":
            return {
                "features": precomp("synth", *names, splits=splits(w)),
                "raw": synth_raw(),
            }
        return {
            "check": f"{RESULTS}/{w.dataset}/check_data.json",
            "features": precomp(
                w.dataset, *names, "{split}_caps.txt", splits=splits(w)
            ),
        }

    return inputs


def zeroshot_inputs(w):
    """The global branch's test embeddings (and synth's raw folder, for its exact positives)."""
    names = ["{split}_global_img.npy", "{split}_global_txt.npy"]
    files = {"features": precomp(w.dataset, *names, splits=[test_split(w)])}
    if w.dataset == "synth":
        return files | {"raw": synth_raw()}
    return files | {"check": f"{RESULTS}/{w.dataset}/check_data.json"}


def folder(name):
    """params: the folder of the named input's first file."""
    return lambda w, input: os.path.dirname(input[name][0])


def captions_folder(w, input):
    """Where a split's captions are: synth's raw folder, a real dataset's feature folder."""
    return input.raw if w.dataset == "synth" else os.path.dirname(input.features[0])


def evaluation_labels(w, input):
    """The ground truth beyond the pairs: synth's exact positives; a real dataset's ids for ECCV
    Caption (coco's testall) where it is evaluated."""
    if w.dataset == "synth":
        return f"--captions {input.raw} --positives {input.raw}"
    if input.get("eccv"):
        return f"--image-ids {input.ids[0]} --caption-ids {input.eccv[0]}"
    return ""


def eccv_inputs(w):
    """coco: the ids that bridge the test split to ECCV Caption."""
    if w.dataset == "synth" or not config["real"][w.dataset]["eccv"]:
        return {}
    return {
        "ids": precomp(w.dataset, "{split}_ids.txt", splits=[test_split(w)]),
        "eccv": precomp(w.dataset, "testall_capids.txt"),
    }


def id_mapping(wildcards):
    """A real dataset's id_mapping.json: in precomp/ or beside it (aahr.paths.find_id_mapping);
    when neither exists, the precomp one (download_real then locates it or says where to get it).
    """
    folder = f"{DATA}/{wildcards.dataset}/precomp"
    found = find_id_mapping(folder, DATA, wildcards.dataset)
    return str(found) if found else f"{folder}/id_mapping.json"


def image_root(wildcards):
    """A real dataset's photos (for the global branch): real.{dataset}.image_root, else
    aahr.paths.default_image_root ({data_root}/f30k/flickr30k-images when it exists, else
    {data_root}/{dataset}/images)."""
    return config["real"][wildcards.dataset]["image_root"] or str(
        default_image_root(DATA, wildcards.dataset)
    )
