"""`instructkit embedded`: build the embedded default if needed, print where it is and what it holds."""

from __future__ import annotations

import json

from instructkit.embedded import ensure_embedded


def register(sub) -> None:
    parser = sub.add_parser("embedded", help="build (if needed) and describe the embedded default")
    parser.add_argument("--json", action="store_true", help="print the build record as JSON")
    parser.set_defaults(func=run)


def run(args) -> None:

    assets = ensure_embedded()
    info = {"model_dir": str(assets.model_dir), "data_dir": str(assets.data_dir), **assets.info}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"model:   {info['model_dir']}  ({info['parameters']:,} parameters, pretraining loss {info['pretrain_loss']})")
    print(f"data:    {info['data_dir']}  (train / test: unseen arguments / test_phrasings: unseen phrasings)")
    print(f"built in {info['build_seconds']} s; weights sha256 {info['weights_sha256'][:16]}")
