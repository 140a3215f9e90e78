"""Loaded with `-p ours_plugin`: transformers' BigBirdPegasus names point at bigbird_pegasus' classes
(POINT_AT=reference leaves them alone). Patched at each collection start: importing transformers' test helpers
replaces the `transformers` module object once."""
import os
import sys

import bigbird_pegasus  # noqa: F401  (imported first: it sets THP before torch allocates)

NAMES = ["BigBirdPegasusConfig", "BigBirdPegasusModel", "BigBirdPegasusForConditionalGeneration",
         "BigBirdPegasusForSequenceClassification", "BigBirdPegasusForQuestionAnswering",
         "BigBirdPegasusForCausalLM", "BigBirdPegasusPreTrainedModel"]


def point_at_ours():
    import transformers
    import transformers.models.bigbird_pegasus as ref_package
    import transformers.models.bigbird_pegasus.modeling_bigbird_pegasus as ref_modeling
    from bigbird_pegasus.modeling import model as our_model

    transformers = sys.modules["transformers"]
    for name in NAMES:
        ours = getattr(bigbird_pegasus, name)
        for module in (transformers, ref_package, ref_modeling):
            setattr(module, name, ours)
    ref_modeling.BigBirdPegasusEncoder = our_model.BigBirdPegasusEncoder
    ref_modeling.BigBirdPegasusDecoder = our_model.BigBirdPegasusDecoder


def pytest_collectstart(collector):
    if os.environ.get("POINT_AT", "ours") == "ours":
        point_at_ours()
        point_generate_outputs_at_ours()


GENERATE_OUTPUTS = ["GenerateEncoderDecoderOutput", "GenerateBeamEncoderDecoderOutput", "GenerateDecoderOnlyOutput",
                    "GenerateBeamDecoderOnlyOutput"]


def point_generate_outputs_at_ours():
    """The tests check `isinstance(output, transformers' Generate*Output)`: point those names at ours too."""
    import transformers.generation
    from bigbird_pegasus.generation import outputs

    for name in GENERATE_OUTPUTS:
        setattr(sys.modules["transformers.generation"], name, getattr(outputs, name))
        setattr(sys.modules["transformers"], name, getattr(outputs, name))
