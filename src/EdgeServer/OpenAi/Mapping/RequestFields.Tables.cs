using System.Text.Json;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// The request field tables of the APIs EdgeServer serves. A new field is a row here plus its use in the API's
/// mapper; docs/api.md's chat table is checked against <see cref="Chat"/>.
/// </summary>
internal static class RequestFields
{
    private const FieldHandling Honoured = FieldHandling.Honoured;
    private const FieldHandling Ignored = FieldHandling.Ignored;
    private const FieldHandling Refused = FieldHandling.Refused;

    /// <summary>Fields chat and legacy completions share: length, sampling, stop, streaming, n.</summary>
    private static readonly RequestField[] Sampling =
    [
        new("temperature", "number", Honoured, "{range}; 0 is greedy. Default {default}.") { Engine = GenerationField.Temperature },
        new("top_p", "number", Honoured, "{range}. Default {default}.") { Engine = GenerationField.TopP },
        new("frequency_penalty", "number", Honoured, "{range}. Default {default} (off).") { Engine = GenerationField.FrequencyPenalty },
        new("presence_penalty", "number", Honoured, "{range}. Default {default} (off).") { Engine = GenerationField.PresencePenalty },
        new("seed", "integer", Honoured, "Same seed, same parameters, same prompt: same output. -1 or absent: random. With `n` > 1, choice *i* uses seed + *i*.") { Engine = GenerationField.Seed },
        new("stop", "string or array", Honoured, "Up to {limit} strings of at most `EdgeServer:Limits:MaxStopLength` characters; matched across token boundaries and not included in the output.") { Engine = GenerationField.Stop, Limit = GenerationLimit.MaxStopSequences },
        new("n", "integer", Honoured, "Choices generated side by side, each in its own slot, and admitted together (each takes a place among the model's slots and queue); {range}, up to {limit}. Usage counts the prompt once.") { Engine = GenerationField.Choices, Limit = GenerationLimit.MaxChoices },
        new("stream", "boolean", Honoured, "Server-sent events, one chunk per token."),
        new("stream_options", "object", Honoured, "`include_usage` sends a last chunk with usage. `include_obfuscation` is accepted; chunks are not padded. Only with `stream`."),
        new("logit_bias", "object", Honoured, "Token id (see `/tokenize`) → bias from {range}, added to the logit before sampling. An id outside the vocabulary is a 400.") { Engine = GenerationField.LogitBias },
        new("user", "string", Ignored, "Accepted; no effect (EdgeServer keeps no per-user state)."),
    ];

    /// <summary>Ollama's keep_alive, on every generating API.</summary>
    private static readonly RequestField KeepAlive = new("keep_alive", "number or string", Honoured,
        "Ollama's: how long the model stays loaded once idle after this request, in seconds or as `\"5m\"`, `\"1h\"`; 0 unloads it right after, a negative value keeps it until it must make room. Default `EdgeServer:Memory:KeepAlive`.");

    private static readonly RequestField[] Extensions =
    [
        new("top_k", "integer", Honoured, "{range}; 0 = off. Default {default}.") { Engine = GenerationField.TopK, Extension = true },
        new("min_p", "number", Honoured, "{range}. Default {default}.") { Engine = GenerationField.MinP, Extension = true },
        new("repeat_penalty", "number", Honoured, "{range}; 1 = off. Default {default}.") { Engine = GenerationField.RepeatPenalty, Extension = true },
        new("ignore_eos", "boolean", Honoured, "Keep generating past end-of-generation tokens (benchmarks use it to produce exactly `max_tokens`).") { Engine = GenerationField.IgnoreEos, Extension = true },
        KeepAlive with { Extension = true },
    ];

    public static FieldTable Chat { get; } = new("chat completions",
    [
        new("messages", "array", Honoured, "Up to {limit}. Roles `system`, `developer` (treated as `system`), `user`, `assistant`, `tool`. Content is a string or an array of `text` parts of at most `EdgeServer:Limits:MaxMessageChars` characters in all; other part types are a 400. Assistant `tool_calls` and `tool` results (with `tool_call_id`) are rendered by the model's chat template. Everything a client sends here and in `tools` stays text: a control token's text in it (`<|im_end|>`, `</s>`, `[INST]`) reaches the model as those characters, never as the token, so it cannot end a turn or open a new one; only the template's own text yields control tokens. User-defined tokens such as `<think>` are read as tokens, as in a plain prompt. A message's `name` has at most 64 characters (OpenAI's spec gives no limit; 64 is its limit for function names); a function name in `tool_calls` follows OpenAI's rule for function names, `^[a-zA-Z0-9_-]{1,64}$`.") { Engine = GenerationField.Messages, Limit = GenerationLimit.MaxMessages },
        new("model", "string", Honoured, "A model id from `/v1/models`.") { Engine = GenerationField.Model },
        new("max_completion_tokens", "integer", Honoured, "{range} and at most {limit}; `max_completion_tokens` wins over `max_tokens`. Default: `EdgeServer:Limits:DefaultMaxTokens` (default " + GenerationLimits.Default.DefaultMaxTokens + "), at most to the end of the context; OpenAI's default is the model's whole output limit.") { Aliases = ["max_tokens"], Engine = GenerationField.MaxTokens, Limit = GenerationLimit.MaxTokens },
        .. Sampling,
        new("logprobs", "boolean", Honoured, "Each generated token's log probability under the model (log-softmax of the raw logits, before temperature and cuts) with its UTF-8 bytes.") { Engine = GenerationField.Logprobs },
        new("top_logprobs", "integer", Honoured, "{range} alternatives per token; needs `logprobs`.") { Engine = GenerationField.TopLogprobs },
        new("tools", "array", Honoured, "Up to 128 `function` tools (other tool types are a 400), named by `^[a-zA-Z0-9_-]{1,64}$`. Parameter schemas are checked as for structured output: a keyword that cannot be enforced is a 400 naming it. `strict: true` is enforced by a grammar: from the reply's first token when the call is forced, and with `auto` from where the model opens a call (see Tools below); a strict tool with `auto` and a JSON `response_format` is a 400.") { Engine = GenerationField.Tools },
        new("tool_choice", "string or object", Honoured, "`none` (tools are not shown to the model), `auto` (the model chooses; calls are parsed from its output, and a strict tool's call is held to its schema once the model opens it), `required` and `{\"type\": \"function\", \"function\": {\"name\"}}` (enforced by a grammar, so even a small model returns a valid call).") { Engine = GenerationField.ToolChoice },
        new("parallel_tool_calls", "boolean", Honoured, "`true` lets one turn hold up to 8 calls. Default **false**, as in llama-server: small models allowed several calls tend to repeat one.") { Engine = GenerationField.ParallelToolCalls },
        new("response_format", "object", Honoured, "`text`, `json_object` (any JSON object) and `json_schema` (JSON valid against the schema), enforced while sampling by a GBNF grammar. `strict` is accepted; the schema is enforced either way. See below for supported keywords. A forced tool call together with a JSON format is a 400.") { Engine = GenerationField.ResponseFormat },
        new("safety_identifier", "string", Ignored, "Accepted; no effect (EdgeServer keeps no per-user state)."),
        new("store", "boolean", Ignored, "Accepted; no effect (nothing is stored)."),
        new("metadata", "object", Ignored, "Accepted; no effect (nothing is stored)."),
        new("service_tier", "string", Ignored, "Accepted; no effect (one tier)."),
        new("prompt_cache_key", "string", Ignored, "Accepted; no effect. Prompt prefixes are reused automatically (`usage.prompt_tokens_details.cached_tokens`)."),
        new("prompt_cache_retention", "string", Ignored, "Accepted; no effect."),
        new("prompt_cache_options", "object", Ignored, "Accepted; no effect."),
        new("modalities", "array", Honoured, "`[\"text\"]` only; `audio` is a 400."),
        new("audio", "object", Refused, "EdgeServer serves text models; there is no audio output."),
        new("prediction", "object", Refused, "predicted outputs are not implemented."),
        new("web_search_options", "object", Refused, "EdgeServer runs offline and does not search the web."),
        new("reasoning_effort", "string", Honoured, "For models that think (their chat template marks thinking, e.g. `<think>`; see Reasoning below). `none` turns thinking off through the template's own switch, `enable_thinking: false`, where it has one (Qwen3, SmolLM3, DeepSeek-R1 distills as llama.cpp ships them); a template without one thinks anyway, and its thinking is still split out. `minimal`, `low`, `medium`, `high`, `xhigh` and `max` keep thinking on and are passed to the template as `reasoning_effort`: templates that read it (gpt-oss) adjust, the others ignore it, and nothing but `max_completion_tokens` bounds the thinking. Default: thinking on."),
        new("verbosity", "string", Refused, "the models it serves have no verbosity setting."),
        new("moderation", "object", Refused, "EdgeServer has no moderation model."),
        new("functions", "array", Refused, "the deprecated functions are not supported; send 'tools'."),
        new("function_call", "string or object", Refused, "the deprecated function_call is not supported; send 'tool_choice'."),
        .. Extensions,
    ]);

    public static FieldTable Completions { get; } = new("completions",
    [
        new("model", "string", Honoured, "A model id from `/v1/models`.") { Engine = GenerationField.Model },
        new("prompt", "string or array", Honoured, "A string, or an array holding one string; at most `EdgeServer:Limits:MaxMessageChars` characters.") { Engine = GenerationField.Prompt },
        new("max_tokens", "integer", Honoured, "{range} and at most {limit}. Default 16.") { Engine = GenerationField.MaxTokens, Limit = GenerationLimit.MaxTokens },
        .. Sampling,
        new("logprobs", "integer", Honoured, "{range}: each token's log probability and this many alternatives, in the legacy shape.") { Engine = GenerationField.TopLogprobs, Range = new FieldRange(0, 5) },
        new("echo", "boolean", Refused, "the prompt is not echoed back; leave 'echo' out or false.") { Kinds = [JsonValueKind.True, JsonValueKind.False], AcceptedWhen = v => v.ValueKind == JsonValueKind.False },
        new("suffix", "string", Refused, "insertion (fill-in-the-middle) is not implemented.") { Kinds = [JsonValueKind.String], AcceptedWhen = v => v.ValueEquals(ReadOnlySpan<byte>.Empty) },
        new("best_of", "integer", Honoured, "Only equal to `n`: choices are not generated server-side and ranked."),
        .. Extensions,
    ]);

    public static FieldTable Responses { get; } = new("responses",
    [
        new("model", "string", Honoured, "A model id from `/v1/models`.") { Engine = GenerationField.Model },
        new("input", "string or array", Honoured, "A string, or items: messages whose content is a string or `input_text` / `output_text` parts, `function_call` items (an assistant turn's calls) and `function_call_output` items (tool results, by `call_id`), rendered by the model's chat template as chat's `tool_calls` and `tool` messages; `reasoning` items are skipped.") { Engine = GenerationField.Messages, Limit = GenerationLimit.MaxMessages },
        new("instructions", "string", Honoured, "A system message before the input. Not carried over to a response that continues this one by `previous_response_id`, as OpenAI does."),
        new("max_output_tokens", "integer", Honoured, "{range} and at most {limit}. Default: `EdgeServer:Limits:DefaultMaxTokens`, at most to the end of the context. A reply cut by it has status `incomplete`.") { Engine = GenerationField.MaxTokens, Limit = GenerationLimit.MaxTokens },
        new("temperature", "number", Honoured, "{range}; 0 is greedy. Default {default}.") { Engine = GenerationField.Temperature },
        new("top_p", "number", Honoured, "{range}. Default {default}.") { Engine = GenerationField.TopP },
        new("stream", "boolean", Honoured, "Typed server-sent events."),
        new("text", "object", Honoured, "`format`: `text`, `json_object` or `json_schema`, as chat's `response_format`.") { Engine = GenerationField.ResponseFormat },
        KeepAlive,
        new("store", "boolean", Honoured, "Default true: the response is kept in memory for `previous_response_id` and `GET /v1/responses/{id}`, bounded by `EdgeServer:Responses:StoreLimit`, `StoreMaxAgeMinutes` and `StoreMaxBytes` (oldest evicted first). `false` keeps nothing."),
        new("metadata", "object", Ignored, "Accepted and echoed."),
        new("user", "string", Ignored, "Accepted; no effect."),
        new("safety_identifier", "string", Ignored, "Accepted; no effect."),
        new("prompt_cache_key", "string", Ignored, "Accepted; no effect."),
        new("prompt_cache_retention", "string", Ignored, "Accepted; no effect."),
        new("prompt_cache_options", "object", Ignored, "Accepted; no effect."),
        new("service_tier", "string", Ignored, "Accepted; no effect."),
        new("parallel_tool_calls", "boolean", Honoured, "As chat's: `true` lets one turn hold up to 8 calls. Default **false**.") { Engine = GenerationField.ParallelToolCalls },
        new("stream_options", "object", Ignored, "Accepted; no effect."),
        new("truncation", "string", Honoured, "Only `disabled`: EdgeServer does not drop input."),
        new("tool_choice", "string or object", Honoured, "`none`, `auto`, `required` or `{\"type\": \"function\", \"name\"}`, as chat's (forced calls are enforced by a grammar). Other types (hosted tools, `allowed_tools`) are a 400.") { Engine = GenerationField.ToolChoice },
        new("tools", "array", Honoured, "`function` tools, flat: `{\"type\": \"function\", \"name\", \"description\", \"parameters\", \"strict\"}`, checked as chat's tools. `strict` left out is false (OpenAI's default is true). Hosted tools (`web_search`, `file_search`, ...) are a 400.") { Engine = GenerationField.Tools },
        new("previous_response_id", "string", Honoured, "Continues a stored response: its input and output (not its instructions) come before this `input`. Unknown, expired, evicted or made with another API key: 404 `previous_response_not_found`."),
        new("conversation", "string or object", Refused, "EdgeServer stores no conversations; send the whole conversation in 'input'."),
        new("background", "boolean", Refused, "background runs are not supported.") { AcceptedWhen = v => v.ValueKind == JsonValueKind.False },
        new("reasoning", "object", Honoured, "`effort` as chat's `reasoning_effort`. `summary` and `generate_summary` are accepted; no summaries are written: a thinking model's thinking comes back as a `reasoning` output item holding its text."),
        new("include", "array", Refused, "no extra output items are available.") { AcceptedWhen = EmptyArray },
        new("prompt", "object", Refused, "stored prompt templates are not supported."),
        new("max_tool_calls", "integer", Refused, "it counts calls to hosted tools, which EdgeServer does not have; use parallel_tool_calls."),
        new("top_logprobs", "integer", Refused, "log probabilities are served by /v1/chat/completions."),
        new("context_management", "object", Refused, "context management is not supported."),
        new("moderation", "object", Refused, "EdgeServer has no moderation model."),
    ]);

    private static bool EmptyArray(JsonElement value) => value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 0;
}
