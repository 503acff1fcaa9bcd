# Helpers shared by the rules (only here).
import json

EXPERIMENTS = list(config["experiments"])
SHARDS = list(range(config["cams"]["shards"]))
DATASET = "results/data/prepared"


def experiment_settings(experiment):
    """The config leaves the classifier uses: preset and merged model/train overrides, as JSON strings."""
    exp = config["experiments"][experiment]
    model = {**config.get("model", {}), **exp.get("model", {})}
    train = {**config.get("train", {}), **exp.get("train", {})}
    return exp["preset"], json.dumps(model, sort_keys=True), json.dumps(train, sort_keys=True)


def overrides(section, settings_json):
    """`section.key=value` arguments for `python -m rpc train --set`."""
    return " ".join(f"'{section}.{k}={json.dumps(v)}'" for k, v in json.loads(settings_json).items())
