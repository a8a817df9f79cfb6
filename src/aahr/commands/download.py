"""aahr download: locate a real dataset or explain where to get it; with --what, fetch what is public."""

from __future__ import annotations

import argparse
import sys

HELP = ("Find a real dataset's precomp folder (linking {dataset}_precomp into {dataset}/precomp) or list "
        "the files needed and where they are published (exit 2 if absent); with --what, first fetch "
        "what is publicly downloadable.")

EPILOG = """\
Without --what nothing is fetched: the data is located (the canonical layout data/{dataset}/precomp/
with id_mapping.json beside it, or {dataset}_precomp/, linked into place) or the files needed are listed.

With --what (a comma-separated list of features, images, weights, vocab, annotations), the sources of
the packaged manifest (src/aahr/reference/downloads.json) are fetched first:
  features     SCAN's data.zip (precomputed region features, captions, ids) -> {data_root}/{dataset}/precomp
  images       coco: COCO train2014.zip / val2014.zip -> {data_root}/coco/images/{train2014,val2014}
  weights      OpenCLIP laion/CLIP-ViT-B-32-laion2B-s34B-b79K and bert-base-uncased from the Hugging
               Face hub (HF_ENDPOINT honoured) -> {data_root}/weights/; the config keys to set are printed
  vocab        SCAN's vocab.zip -> {data_root}/vocab (not read by aahr)
  annotations  coco: annotations_trainval2014.zip -> {data_root}/coco/annotations (not read by aahr)
Archives go to {data_root}/downloads/ (a dropped connection resumes from the .part file with a Range
request; run the command again to resume after a failure), are checked against the manifest's size
and sha256 (where a source publishes no hash, the sha256 of the first download is recorded beside the
archive and later downloads are checked against it), and are extracted through a temporary folder.
Sources behind a login or a form are never fetched; where to get them and where to put them is
printed: the Kaggle copy of the features, the VSE-infinity id_mapping.json and COCO testall_capids.txt,
the Flickr30K photos (the authors' request form). Then the data is located as without --what.

The workflow runs the fetching form (--what features,images,weights) when the config has
`download: true`:  snakemake --cores 8 --configfile configs/f30k.yaml --config download=true"""


def configure(p: argparse.ArgumentParser) -> None:
    from aahr.download import MANIFEST_ENV
    from aahr.realdata import DATASETS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-root", required=True,
                   help="folder that holds (or will hold) {dataset}/precomp or {dataset}_precomp")
    p.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                   help="splits needed (default: f30k train dev test; coco train dev testall)")
    p.add_argument("--what", default=None, metavar="LIST",
                   help="fetch these first: features,images,weights (also vocab, annotations); default: "
                        "fetch nothing, only locate or explain")
    p.add_argument("--manifest", default=None, metavar="FILE",
                   help=f"download manifest (default: ${MANIFEST_ENV}, else the packaged "
                        "src/aahr/reference/downloads.json); for a mirror")
    p.add_argument("--retries", type=int, default=3,
                   help="resume a dropped download this many times with a Range request (default: 3)")
    p.add_argument("--keep-archives", action="store_true",
                   help="keep the archives in {data_root}/downloads/ after extraction (default: remove them; "
                        "their .sha256 records stay)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (shown only on a terminal anyway)")


def run(args: argparse.Namespace) -> int:
    from aahr.errors import AahrError
    from aahr.realdata import locate_or_link

    if args.what is None:
        print(locate_or_link(args.data_root, args.dataset, args.splits))
        return 0

    from aahr.download import fetch, parse_what

    what = parse_what(args.what)
    if args.retries < 0:
        raise AahrError(f"--retries must be >= 0, got {args.retries}")
    try:
        locate_or_link(args.data_root, args.dataset, args.splits)
        present = True
    except AahrError:
        present = False
    outcome = fetch(args.data_root, args.dataset, what, manifest=args.manifest,
                    progress=not args.quiet and sys.stderr.isatty(), retries=args.retries,
                    keep_archives=args.keep_archives, features_present=present)
    text = outcome.text()
    if "features" not in what:
        print(text)
        return 0
    try:
        found = locate_or_link(args.data_root, args.dataset, args.splits)
    except AahrError as exc:
        raise AahrError(f"{text}\n{exc}" if text else str(exc)) from None
    print(f"{text}\n{found}" if text else found)
    return 0
