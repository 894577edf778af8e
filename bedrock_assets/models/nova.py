"""Amazon Nova understanding models (Micro, Lite, Pro, Premier, Nova 2 Lite) through InvokeModel.

Sources: Amazon Nova user guides, "Invoke Amazon Nova understanding models"
(https://docs.aws.amazon.com/nova/latest/userguide/invoke.html) and, for Nova 2, "Request and response
schema" (https://docs.aws.amazon.com/nova/latest/nova2-userguide/request-response-schema.html): the
body is the Converse shape (``messages`` of ``{"text"}`` blocks, ``system`` as text blocks,
``inferenceConfig`` with ``maxTokens``, ``temperature``, ``topP``, ``topK``, ``stopSequences``), plus
``schemaVersion: "messages-v1"`` in the Nova 1 examples; the response is
``output.message.content[].text``, ``stopReason`` and ``usage.inputTokens`` / ``outputTokens``, as
from Converse.
"""

from __future__ import annotations

from typing import Any

from bedrock_assets.bedrock.model_ids import model_key
from bedrock_assets.models.converse import ConverseAdapter
from bedrock_assets.output_schema import Mechanism

NOVA_SCHEMA_VERSION = "messages-v1"
NOVA_TEXT_MODELS = (
    "amazon.nova-micro",
    "amazon.nova-lite",
    "amazon.nova-pro",
    "amazon.nova-premier",
    "amazon.nova-2-lite",
)


class NovaAdapter(ConverseAdapter):
    """Nova's native body: the Converse body with ``schemaVersion`` (Nova 1; the Nova 2 schema has none).

    A structured answer is asked for with a forced tool (``toolConfig``): Nova constrains decoding to a
    tool's schema ("is leveraged every time that a tool configuration is passed", the Nova user guide's
    structured output page), and InvokeModel-type batch jobs take tools; Nova is not among the models the
    structured-output page lists for a JSON schema output format.
    """

    family = "amazon-nova"
    invocation_type = "InvokeModel"

    @property
    def structured_mechanism(self) -> Mechanism:
        return Mechanism.FORCED_TOOL

    def body_for_text(self, text: str) -> dict[str, Any]:
        body = super().body_for_text(text)
        if model_key(self.model_id).startswith("amazon.nova-2"):
            return body
        return {"schemaVersion": NOVA_SCHEMA_VERSION, **body}
