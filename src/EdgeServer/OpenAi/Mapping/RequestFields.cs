using System.Text;
using System.Text.Json;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>What EdgeServer does with a request field.</summary>
internal enum FieldHandling
{
    /// <summary>Read and acted on.</summary>
    Honoured,

    /// <summary>Accepted and checked for type, with no effect (EdgeServer keeps no state, has no tiers).</summary>
    Ignored,

    /// <summary>Known but not honoured: set to anything but null it is a 400 saying why (unsupported_parameter).</summary>
    Refused,
}

/// <summary>
/// One row of an API's request field table: the wire name and its aliases, the JSON type, the engine field whose
/// range and default apply (<see cref="GenerationFields"/>), the limit setting that caps it, and what EdgeServer
/// does with it. <see cref="Behaviour"/> may hold {range}, {default} and {limit}, filled from the engine's table and
/// the limit's default, so docs/api.md, which is checked against the rendered table, never repeats a number.
/// </summary>
internal sealed record RequestField(string Name, string Type, FieldHandling Handling, string Behaviour)
{
    /// <summary>Other wire names of the same field; the first name given wins when several are sent.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    public GenerationField? Engine { get; init; }

    public GenerationLimit? Limit { get; init; }

    /// <summary>The wire range, when this API's differs from the engine field's (the legacy completions' logprobs).</summary>
    public FieldRange? Range { get; init; }

    /// <summary>For a refused field: the JSON kinds it may have; another kind is a 400 invalid_type (null: any).</summary>
    public IReadOnlyList<JsonValueKind>? Kinds { get; init; }

    /// <summary>For a refused field: values that mean "not used" and are accepted (false, an empty list).</summary>
    public Func<JsonElement, bool>? AcceptedWhen { get; init; }

    /// <summary>llama-server's extension rather than OpenAI's field.</summary>
    public bool Extension { get; init; }

    public IEnumerable<string> Names => [Name, .. Aliases];

    /// <summary>The behaviour with its placeholders filled.</summary>
    public string Describe()
    {
        var text = new StringBuilder(Behaviour);
        var range = Range ?? (Engine is { } field ? GenerationFields.Range(field) : null);
        if (range is not null)
        {
            text.Replace("{range}", range.Short());
        }

        if (Engine is { } engine && GenerationFields.Default(engine) is { } value)
        {
            text.Replace("{default}", value);
        }

        if (Limit is { } limit)
        {
            text.Replace("{limit}", $"`{LimitSettings.Name(limit)}` (default {LimitSettings.Default(limit)})");
        }

        return text.Length > 0 ? char.ToUpperInvariant(text[0]) + text.ToString(1, text.Length - 1) : string.Empty;
    }
}

/// <summary>The fields of one API's request, in the order its documentation lists them.</summary>
internal sealed class FieldTable(string api, IReadOnlyList<RequestField> rows)
{
    private readonly Dictionary<string, RequestField> _byName = rows.SelectMany(r => r.Names.Select(n => (n, r))).ToDictionary(p => p.n, p => p.r, StringComparer.Ordinal);

    public string Api => api;

    public IReadOnlyList<RequestField> Rows => rows;

    public RequestField this[string name] => _byName[name];

    /// <summary>The wire name of an engine field, or null when this API has no such top-level field.</summary>
    public string? NameOf(GenerationField field) => rows.FirstOrDefault(r => r.Engine == field)?.Name;

    /// <summary>
    /// Fields the DTO does not bind land in its extension data: a refused one set to a value is a 400 saying why
    /// (null, or a value its row accepts, means "not given"); any other is unknown, as OpenAI answers.
    /// </summary>
    public void RejectUnbound(Dictionary<string, JsonElement>? unbound, string prefix = "")
    {
        if (unbound is not { Count: > 0 })
        {
            return;
        }

        // Unknown fields first, as OpenAI answers: a typo is the likelier mistake.
        foreach (var name in unbound.Keys.Where(n => !_byName.TryGetValue(n, out var row) || row.Handling != FieldHandling.Refused))
        {
            throw WireReader.Unknown(prefix + name);
        }

        foreach (var (name, value) in unbound)
        {
            var row = _byName[name];
            if (value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            if (row.Kinds is { } kinds && !kinds.Contains(value.ValueKind))
            {
                throw OpenAiException.InvalidType(prefix + name, $"a {row.Type}");
            }

            if (row.AcceptedWhen?.Invoke(value) != true)
            {
                throw WireReader.Unsupported(prefix + name, row.Behaviour);
            }
        }
    }

    /// <summary>The table as docs/api.md shows it: one row per field, its names in backticks.</summary>
    public string ToMarkdown(bool extensions)
    {
        var text = new StringBuilder("| Field | EdgeServer |\n|---|---|\n");
        foreach (var row in rows.Where(r => r.Extension == extensions))
        {
            var behaviour = row.Handling == FieldHandling.Refused ? "400: " + row.Describe() : row.Describe();
            text.Append("| ").AppendJoin(", ", row.Names.Select(n => $"`{n}`")).Append(" | ").Append(behaviour).Append(" |\n");
        }

        return text.ToString();
    }
}

/// <summary>The settings under EdgeServer:Limits that cap request fields.</summary>
internal static class LimitSettings
{
    public static string Name(GenerationLimit limit) => "EdgeServer:Limits:" + limit switch
    {
        GenerationLimit.MaxChoices => "MaxN",
        _ => limit.ToString(),
    };

    public static int Default(GenerationLimit limit)
    {
        var d = GenerationLimits.Default;
        return limit switch
        {
            GenerationLimit.MaxTokens => d.MaxTokens,
            GenerationLimit.MaxMessages => d.MaxMessages,
            GenerationLimit.MaxMessageChars => d.MaxMessageChars,
            GenerationLimit.MaxStopSequences => d.MaxStopSequences,
            GenerationLimit.MaxStopLength => d.MaxStopLength,
            GenerationLimit.MaxChoices => d.MaxChoices,
            _ => throw new ArgumentOutOfRangeException(nameof(limit)),
        };
    }
}
