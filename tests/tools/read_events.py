"""Reads every run under a log folder with TensorBoard's own loader, as `tensorboard
--logdir` does, and prints what it found as JSON: per run (its path under the folder),
each scalar tag's [step, value] pairs in order, and the HParams plugin's session start
(hyperparameters) and end (status). Used by tests/tensorboard.rs."""

import json
import sys

from google.protobuf import json_format
from tensorboard.backend.event_processing import event_multiplexer
from tensorboard.plugins.hparams import metadata


def read(logdir):
    multiplexer = event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    hparams = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    runs = {}
    for run, tags in multiplexer.Runs().items():
        found = {
            "scalars": {
                tag: [[event.step, event.value] for event in multiplexer.Scalars(run, tag)]
                for tag in tags["scalars"]
            }
        }
        content = hparams.get(run, {})
        if metadata.SESSION_START_INFO_TAG in content:
            start = metadata.parse_session_start_info_plugin_data(
                content[metadata.SESSION_START_INFO_TAG]
            )
            found["hparams"] = {
                name: json_format.MessageToDict(value) for name, value in start.hparams.items()
            }
        if metadata.SESSION_END_INFO_TAG in content:
            end = metadata.parse_session_end_info_plugin_data(
                content[metadata.SESSION_END_INFO_TAG]
            )
            found["status"] = end.status
        runs[run] = found
    return runs


if __name__ == "__main__":
    json.dump(read(sys.argv[1]), sys.stdout)
