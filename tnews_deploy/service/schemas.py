"""The API document: pydantic models of every request and response body (FastAPI builds `/openapi.json` from them).

`build_schemas` makes them at app creation, with the limits of that app: at most `max_batch` texts, each of
1..`max_chars` characters and not whitespace-only, `top_k` in 1..number of labels, labels from the model. So
`/openapi.json` states what this process really accepts and answers. Requests are still parsed by
`app.parse_classify_request`, which gives every fault its own error code (a JSON Schema validator could not)
and answers 422, as a schema validator would, for whatever the schema refuses (`maxItems` and `maxLength`
included; 413 is left to the byte cap); responses with 200 go through these models (FastAPI validates them),
and the property-based test (schemathesis over this document) checks that both sides agree.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, NonNegativeInt, StringConstraints, create_model
from pydantic.json_schema import SkipJsonSchema, models_json_schema

# Error codes by HTTP status: the `code` of `{"error": {"code", "message", "positions"?}}`.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_json", "invalid_utf8"),
    404: ("not_found",),
    405: ("method_not_allowed",),
    413: ("body_too_large",),
    422: (
        "invalid_body",
        "missing_texts",
        "texts_not_a_list",
        "too_many_texts",
        "text_not_a_string",
        "empty_text",
        "invalid_text",
        "text_too_long",
        "invalid_top_k",
    ),
    500: ("internal_error",),
    503: ("overloaded", "shutting_down", "not_ready"),
}

RETRY_AFTER_HEADER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}
}
ALLOW_HEADER = {"Allow": {"description": "The methods this path accepts.", "schema": {"type": "string"}}}


@functools.lru_cache(maxsize=1)
def non_blank_pattern() -> str:
    """A regular expression that matches a text with at least one non-whitespace character.

    "Whitespace" is exactly what Python's `str.isspace` (hence `str.strip`, which the service uses) counts
    as such, spelled out as `\\uXXXX` escapes so that ECMA-262 (JSON Schema), Python and Rust regex engines
    read it alike (their own `\\s` classes differ: U+001C..U+001F, U+0085, U+FEFF).
    """
    spaces = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    ranges: list[list[int]] = []
    for c in spaces:
        if ranges and c == ranges[-1][1] + 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    parts = [f"\\u{a:04X}" if a == b else f"\\u{a:04X}-\\u{b:04X}" for a, b in ranges]
    return "[^" + "".join(parts) + "]"


class ModelSummary(BaseModel):
    """The model that answered: its name and version, checksum and how it was exported."""

    name: str = Field(
        description="The model's name: its manifest's release name (the bundled model: tnews-compact), else the "
        "installed model package's name, else the export folder's name."
    )
    version: str | None = Field(
        description="The model's version: its manifest's release version, else the installed model package's "
        "version; null when unknown (a plain export folder)."
    )
    sha256: str | None = Field(description="sha256 of the ONNX file, from the export manifest.")
    quantization: str = Field(description='Quantisation mode of the export ("none" when not quantised).')
    optimization: str = Field(description='ORT graph optimisation level of the export ("none" when not optimised).')


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]


class Limits(BaseModel):
    max_batch: int = Field(description="Most texts in one request (more: 422 too_many_texts).")
    max_chars: int = Field(description="Longest text, in characters (longer: 422 text_too_long).")
    max_queue: int = Field(description="Most classify requests waiting for or in the model (more: 503 overloaded).")
    max_body_bytes: int = Field(
        description="Largest request body read (larger: 413 body_too_large); any valid request fits."
    )


class MicroBatching(BaseModel):
    window_ms: float
    max_texts: int
    batches: int = Field(description="Model calls made by the micro-batcher since start.")
    requests: int = Field(description="Requests answered by the micro-batcher since start.")


class CpuInfo(BaseModel):
    serving: dict[str, Any] = Field(
        description="The CPU serving this worker: model name, arch, kernel flags, whether its u8 x s8 int8 kernels "
        "are exact (VNNI or ARM64) and the int8 weight form it runs."
    )
    verified_on: dict[str, Any] | None = Field(
        description="The CPU the export was verified on (same fields), from its manifest; null for exports made "
        "before it was recorded."
    )
    int8_kernels: dict[str, Any] | None = Field(
        description="int8 exports: the weight form in the file, the form run here (converted at load when they "
        "differ: same integer products), and whether it is exact on this CPU; null for fp32."
    )


class ModelInfo(ModelSummary):
    tnews_deploy_version: str = Field(
        description="The tnews-deploy version serving (`tnews-deploy --version`); manifest.versions names the one "
        "that exported the model."
    )
    labels: list[str] = Field(description="Class names, by label_id.")
    max_length: int = Field(description="Tokens per text the model sees; longer texts are truncated.")
    limits: Limits
    micro_batching: MicroBatching | None = Field(description="null when micro-batching is off.")
    threads: int = Field(description="onnxruntime intra-op threads of this worker.")
    cpu: CpuInfo
    manifest: dict[str, Any] = Field(
        description="The export manifest's source, creation time, parity verification, model file and versions; "
        "filesystem paths are reduced to their last component."
    )


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # an absent field, never null


# Error positions: a list when texts are at fault, absent (not null) otherwise.
_Positions = list[NonNegativeInt] | SkipJsonSchema[None]


def error_model(name: str, codes: tuple[str, ...], description: str) -> type[BaseModel]:
    """`{"error": {"code", "message", "positions"?}}` with `code` one of `codes`."""
    # Annotations built at run time are values to the type checker: typed Any, as pydantic takes them.
    code: Any = Literal[codes]
    detail = create_model(
        f"{name}Detail",
        code=(code, Field(description="Machine-readable reason.")),
        message=(str, Field(description="What was wrong and what to do, for people.")),
        positions=(
            _Positions,
            Field(
                default=None,
                json_schema_extra=_no_default,
                description="0-based positions of the offending texts, when texts are at fault; absent otherwise.",
            ),
        ),
    )
    return create_model(name, __doc__=description, error=(detail, ...))


@dataclass(frozen=True)
class ServiceSchemas:
    """The models of one app (see `build_schemas`)."""

    classify_request: type[BaseModel]
    classify_response: type[BaseModel]
    errors: dict[str, type[BaseModel]]

    def classify_request_body(self) -> dict[str, Any]:
        """The OpenAPI `requestBody` of POST /v1/classify."""
        schema = self.classify_request.model_json_schema()
        assert "$defs" not in schema, "the request schema must stay self-contained to be inlined"
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

    def responses(self, *entries: tuple[int, str, str]) -> dict[int | str, dict[str, Any]]:
        """FastAPI `responses=`: (status, error model name, description) -> the documented error body."""
        out: dict[int | str, dict[str, Any]] = {}
        for status, name, description in entries:
            out[status] = {"model": self.errors[name], "description": description}
            if name == "Unavailable":
                out[status]["headers"] = RETRY_AFTER_HEADER
        return out


def add_path_errors(document: dict[str, Any], schemas: ServiceSchemas) -> dict[str, Any]:
    """Put the 404 and 405 answers in `document` as reusable responses (`components.responses`).

    They belong to no operation (an unknown path, or a method a path does not have), so FastAPI would not
    list them; clients still need their body.
    """
    models = [schemas.errors["NotFound"], schemas.errors["MethodNotAllowed"]]
    _, definitions = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/components/schemas/{model}"
    )
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(definitions["$defs"])
    components.setdefault("responses", {}).update(
        {
            "NotFound": {
                "description": "404 `not_found`: no such path.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NotFound"}}},
            },
            "MethodNotAllowed": {
                "description": "405 `method_not_allowed`: the path does not take this method.",
                "headers": ALLOW_HEADER,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MethodNotAllowed"}}},
            },
        }
    )
    return document


def build_schemas(max_batch: int, max_chars: int, labels: tuple[str, ...]) -> ServiceSchemas:
    """The request/response models of an app with these limits and labels.

    Args:
        max_batch: most texts in one request.
        max_chars: longest text, in characters.
        labels: the model's class names, by label id.
    """
    num_labels = len(labels)
    # Annotations built at run time are values to the type checker: typed Any, as pydantic takes them.
    text: Any = Annotated[str, StringConstraints(min_length=1, max_length=max_chars, pattern=non_blank_pattern())]
    texts: Any = Annotated[
        list[text],
        Field(
            max_length=max_batch,
            description=(
                f"0..{max_batch} texts, each of 1..{max_chars} characters (Unicode code points), not whitespace-only; "
                f"answered in the same order."
            ),
        ),
    ]
    top_k: Any = Annotated[
        int,
        Field(
            ge=1,
            le=num_labels,
            description=(
                f"Classes per text, best first (1..{num_labels}). 1: each prediction is one object; more: a list of "
                f"top_k objects per text."
            ),
        ),
    ]
    classify_request = create_model(
        "ClassifyRequest",
        __doc__=(
            f"Texts to classify. A text must hold at least one non-whitespace character (whitespace as "
            f"Python's str.isspace: empty or whitespace-only texts get 422 empty_text) and no lone UTF-16 "
            f"surrogate such as \\ud800 (422 invalid_text); more than {max_batch} texts (422 too_many_texts) or "
            f"a text over {max_chars} characters (422 text_too_long) are refused like any other schema "
            f"violation. Unknown fields are ignored."
        ),
        texts=(texts, ...),
        top_k=(top_k, 1),
    )
    label: Any = Literal[tuple(labels)]
    prediction: Any = create_model(
        "Prediction",
        label=(label, Field(description="Class name.")),
        label_id=(Annotated[int, Field(ge=0, le=num_labels - 1)], Field(description="Index of the class.")),
        score=(Annotated[float, Field(ge=0.0, le=1.0)], Field(description="Softmax probability.")),
    )
    ranked: Any = Annotated[list[prediction], Field(min_length=2, max_length=num_labels)]
    predictions: Any = list[prediction] | list[ranked]
    classify_response = create_model(
        "ClassifyResponse",
        predictions=(
            predictions,
            Field(
                description="One entry per text, in input order: a Prediction (top_k = 1) or a list of the top_k best "
                "(top_k > 1)."
            ),
        ),
        model=(ModelSummary, ...),
    )
    errors = {
        "BadRequest": error_model(
            "BadRequest",
            ERROR_CODES[400],
            "The body is not valid JSON / UTF-8, is nested too deeply or holds a huge integer.",
        ),
        "PayloadTooLarge": error_model("PayloadTooLarge", ERROR_CODES[413], "A body larger than any valid request."),
        "Unprocessable": error_model("Unprocessable", ERROR_CODES[422], "Valid JSON that is not a valid request."),
        "Unavailable": error_model(
            "Unavailable",
            ("overloaded", "shutting_down"),
            "The model's queue is full, or the service stopped before answering.",
        ),
        "NotReady": error_model("NotReady", ("not_ready",), "The model is not warmed up yet."),
        "InternalError": error_model("InternalError", ERROR_CODES[500], "A bug; the server logged the details."),
        "NotFound": error_model("NotFound", ERROR_CODES[404], "No such endpoint."),
        "MethodNotAllowed": error_model("MethodNotAllowed", ERROR_CODES[405], "Wrong method for this endpoint."),
    }
    return ServiceSchemas(classify_request=classify_request, classify_response=classify_response, errors=errors)
