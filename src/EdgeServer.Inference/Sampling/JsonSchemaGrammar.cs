using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;
using EdgeServer.Inference.Sampling.Automata;
using EdgeServer.Inference.Text;

namespace EdgeServer.Inference.Sampling;

/// <summary>
/// Turns a JSON Schema into a GBNF grammar (llama.cpp's grammar language) whose every sentence is JSON that
/// validates against the schema. A keyword the grammar cannot enforce is refused with
/// <see cref="UnsupportedSchemaException"/> naming it, never silently dropped.
/// Whitespace is limited to one optional space between tokens, and numbers to 16 digits, so a small model
/// cannot wander off into endless padding. Patterns, formats and number ranges become deterministic automata
/// (<see cref="Dfa"/>) written as one rule per state, so llama.cpp follows one path through them.
/// </summary>
public sealed class JsonSchemaGrammar
{
    /// <summary>Keywords that describe and do not constrain; they are accepted and have no effect.</summary>
    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "title", "description", "$schema", "$id", "$comment", "examples", "default", "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict",
    };

    /// <summary>What each type may carry besides annotations.</summary>
    private static readonly Dictionary<string, HashSet<string>> Supported = new(StringComparer.Ordinal)
    {
        ["object"] = new(StringComparer.Ordinal) { "type", "properties", "required", "additionalProperties" },
        ["array"] = new(StringComparer.Ordinal) { "type", "items", "prefixItems", "minItems", "maxItems" },
        ["string"] = new(StringComparer.Ordinal) { "type", "minLength", "maxLength", "format", "pattern" },
        ["number"] = new(StringComparer.Ordinal) { "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf" },
        ["integer"] = new(StringComparer.Ordinal) { "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf" },
        ["boolean"] = new(StringComparer.Ordinal) { "type" },
        ["null"] = new(StringComparer.Ordinal) { "type" },
    };

    private const int MaxDepth = 32;

    private static readonly (string Name, string Body)[] Primitives =
    [
        ("space", "\" \"?"),
        ("boolean", "(\"true\" | \"false\") space"),
        ("null", "\"null\" space"),
        ("integral-part", "[0] | [1-9] [0-9]{0,15}"),
        ("integer", "\"-\"? integral-part space"),
        ("number", "\"-\"? integral-part (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})? space"),
        ("char", "[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})"),
        ("string", "\"\\\"\" char* \"\\\"\" space"),
        ("value", "object | array | string | number | boolean | null"),
        ("object", "\"{\" space (string \":\" space value (\",\" space string \":\" space value)*)? \"}\" space"),
        ("array", "\"[\" space (value (\",\" space value)*)? \"]\" space"),
    ];

    /// <summary>
    /// Default of <see cref="MaxAlternatives"/>: options of a schema that may match the same text at once,
    /// multiplied through nesting. llama.cpp's grammar follows every such option side by side, so its work per
    /// token grows with this product (measured in docs/api.md).
    /// </summary>
    public const int DefaultMaxAlternatives = 16;

    /// <summary>Properties one object may declare: each optional one is a way the grammar may go after every value.</summary>
    private const int MaxProperties = 512;

    /// <summary>llama.cpp treats a repetition bound above this as unbounded (MAX_REPETITION_THRESHOLD).</summary>
    private const int MaxRepetition = 2000;

    /// <summary>Rules one automaton (pattern, format, number range) may add to the grammar, one per state, minimized.</summary>
    private const int MaxAutomatonRules = 4_000;

    /// <summary>Rules all automata together may add to one grammar.</summary>
    private const int MaxAutomatonStates = 20_000;

    /// <summary>Characters all automata together may add to one grammar (a class of many ranges is long).</summary>
    private const int MaxAutomatonText = 1_000_000;

    private static readonly string[] NumberKeywords = ["minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf"];

    private JsonElement _document;
    private FieldRef _field;
    private readonly int _maxAlternatives;
    private readonly Dictionary<string, long> _alternatives = new(StringComparer.Ordinal);
    private readonly HashSet<string> _resolving = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<string>> _heads = new(StringComparer.Ordinal);
    private int _backReferences; // references to a $ref still being built: recursion
    private readonly Dictionary<string, string> _rules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _byBody = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _refs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _automata = new(StringComparer.Ordinal);
    private readonly AutomatonBudget _budget = new();
    private int _automatonStates;
    private long _automatonText;

    private JsonSchemaGrammar(JsonElement document, FieldRef field, int maxAlternatives)
    {
        _document = document;
        _field = field;
        _maxAlternatives = maxAlternatives;
    }

    /// <summary>A grammar for any JSON object (response_format json_object).</summary>
    public static string AnyObject() => Build(_ => "object");

    /// <summary>
    /// A grammar for JSON valid against <paramref name="schema"/>; <paramref name="field"/> is the request field it came from, for errors.
    /// A schema whose options could match the same text more than <paramref name="maxAlternatives"/> ways at once
    /// is refused (<see cref="UnsupportedSchemaException"/> naming where).
    /// </summary>
    public static string FromSchema(JsonElement schema, FieldRef field, int maxAlternatives = DefaultMaxAlternatives) =>
        Build(g => g.Visit(schema, "root-value", string.Empty, 0), schema, field, maxAlternatives);

    /// <summary>The GBNF expression for <paramref name="schema"/> inside a larger grammar (tool calls), with its rules.</summary>
    internal static string Compose(Func<Func<JsonElement, string, FieldRef, string>, string> root, int maxAlternatives = DefaultMaxAlternatives) =>
        Build(g => root((schema, hint, field) =>
        {
            // Each schema resolves its own $refs.
            g._document = schema;
            g._field = field;
            g._refs.Clear();
            g._heads.Clear();
            return g.Visit(schema, hint, string.Empty, 0);
        }), maxAlternatives: maxAlternatives);

    private static string Build(Func<JsonSchemaGrammar, string> root, JsonElement document = default, FieldRef field = default, int maxAlternatives = DefaultMaxAlternatives)
    {
        var g = new JsonSchemaGrammar(document, field, maxAlternatives);
        var expression = root(g);
        var text = new StringBuilder();
        text.Append("root ::= ").Append(expression).Append('\n');
        foreach (var (name, body) in g._rules)
        {
            text.Append(name).Append(" ::= ").Append(body).Append('\n');
        }

        // The primitives follow, all of them: the ones no rule uses cost llama.cpp nothing.
        foreach (var (name, body) in Primitives)
        {
            text.Append(name).Append(" ::= ").Append(body).Append('\n');
        }

        return text.ToString();
    }

    private string Rule(string hint, string body)
    {
        if (_byBody.TryGetValue(body, out var existing))
        {
            return existing;
        }

        var name = UniqueName(hint);
        _rules[name] = body;
        _byBody[body] = name;
        return name;
    }

    private string UniqueName(string hint)
    {
        var clean = new StringBuilder();
        foreach (var c in hint)
        {
            clean.Append(char.IsAsciiLetterOrDigit(c) ? char.ToLowerInvariant(c) : '-');
        }

        var baseName = clean.Length == 0 ? "r" : clean.ToString().Trim('-');
        if (baseName.Length == 0 || Primitives.Any(p => p.Name == baseName) || baseName == "root")
        {
            baseName = "r-" + baseName;
        }

        var name = baseName;
        for (var i = 1; _rules.ContainsKey(name) || _refs.ContainsValue(name); i++)
        {
            name = baseName + "-" + i.ToString(CultureInfo.InvariantCulture);
        }

        return name;
    }

    private UnsupportedSchemaException Unsupported(string keyword, string path, string why) => new(_field, keyword, path, why);

    private string Visit(JsonElement schema, string hint, string path, int depth)
    {
        if (depth > MaxDepth)
        {
            throw Unsupported("(nesting)", path, $"schemas nested deeper than {MaxDepth} levels are not supported");
        }

        if (schema.ValueKind == JsonValueKind.True)
        {
            return "value";
        }

        if (schema.ValueKind != JsonValueKind.Object)
        {
            throw Unsupported("(schema)", path, "a schema must be an object or true");
        }

        if (schema.TryGetProperty("$ref", out var reference))
        {
            return Ref(reference, path, depth);
        }

        if (schema.TryGetProperty("const", out var constant))
        {
            CheckOnly(schema, path, "const");
            return Literal(constant);
        }

        if (schema.TryGetProperty("enum", out var values))
        {
            CheckOnly(schema, path, "enum");
            if (values.ValueKind != JsonValueKind.Array || values.GetArrayLength() == 0)
            {
                throw Unsupported("enum", path, "'enum' must be a non-empty array");
            }

            return Choice(hint, values.EnumerateArray().Select(CompactJson)) + " space";
        }

        foreach (var combinator in new[] { "anyOf", "oneOf" })
        {
            if (schema.TryGetProperty(combinator, out var options))
            {
                CheckOnly(schema, path, combinator);
                if (options.ValueKind != JsonValueKind.Array || options.GetArrayLength() == 0)
                {
                    throw Unsupported(combinator, path, $"'{combinator}' must be a non-empty array");
                }

                var visited = new List<(string Expression, List<string> Heads)>();
                var recursive = new HashSet<string>(StringComparer.Ordinal);
                var literals = options.EnumerateArray().Where(IsLiteral).ToList();
                if (literals.Count > 1)
                {
                    // Constants become one prefix tree, which llama.cpp follows along one path however many there are.
                    var texts = literals.SelectMany(o => o.TryGetProperty("const", out var c) ? [c] : o.GetProperty("enum").EnumerateArray().ToArray()).Select(CompactJson).ToList();
                    visited.Add((Choice($"{hint}-const", texts) + " space", texts));
                }

                foreach (var (option, i) in MergeBounds(options))
                {
                    if (literals.Count > 1 && IsLiteral(option))
                    {
                        continue;
                    }

                    var before = _backReferences;
                    var expression = Visit(option, $"{hint}-{i}", $"{path}/{combinator}/{i}", depth + 1);
                    if (visited.All(v => v.Expression != expression))
                    {
                        visited.Add((expression, Heads(option, 0)));
                    }

                    if (_backReferences != before)
                    {
                        recursive.Add(expression);
                    }
                }

                return Alternatives(hint, $"{path}/{combinator}", visited, recursive);
            }
        }

        if (schema.TryGetProperty("allOf", out var all) && all.ValueKind == JsonValueKind.Array && all.GetArrayLength() == 1)
        {
            CheckOnly(schema, path, "allOf");
            return Visit(all[0], hint, path + "/allOf/0", depth + 1);
        }

        string[] types;
        if (schema.TryGetProperty("type", out var type))
        {
            types = type.ValueKind switch
            {
                JsonValueKind.String => [type.GetString()!],
                JsonValueKind.Array when type.GetArrayLength() > 0 && type.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String) =>
                    type.EnumerateArray().Select(t => t.GetString()!).ToArray(),
                _ => throw Unsupported("type", path, "'type' must be a type name or an array of them"),
            };
        }
        else
        {
            types = InferTypes(schema);
        }

        foreach (var t in types)
        {
            if (!Supported.ContainsKey(t))
            {
                throw Unsupported("type", path, $"'{t}' is not a JSON Schema type");
            }
        }

        foreach (var property in schema.EnumerateObject())
        {
            if (!Annotations.Contains(property.Name) && !types.Any(t => Supported[t].Contains(property.Name)))
            {
                throw Unsupported(property.Name, path, "this keyword cannot be enforced while sampling");
            }
        }

        if (types.Length == 0)
        {
            return "value";
        }

        var parts = new List<(string Expression, List<string> Heads)>();
        var recursiveParts = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in types)
        {
            var before = _backReferences;
            var expression = VisitType(t, schema, types.Length > 1 ? $"{hint}-{t}" : hint, path, depth);
            parts.Add((expression, TypeHeads(t, schema)));
            if (_backReferences != before)
            {
                recursiveParts.Add(expression);
            }
        }

        return parts.Count == 1 ? parts[0].Expression : Alternatives(hint, path + "/type", parts, recursiveParts);
    }

    /// <summary>
    /// A rule of alternatives, checked against the bound on options that may match the same text at once: for
    /// each option, it and the options whose start could read the same as its start may all be followed side
    /// by side, each with its own count from inside.
    /// </summary>
    private string Alternatives(string hint, string path, List<(string Expression, List<string> Heads)> options, HashSet<string> recursive)
    {
        long worst = 1;
        foreach (var (expression, heads) in options)
        {
            var alike = options.Where(o => Overlap(heads, o.Heads)).ToList();
            var together = alike.Sum(o => AlternativesOf(o.Expression));
            worst = Math.Max(worst, together);
            if (together > 1 && alike.Any(o => recursive.Contains(o.Expression)))
            {
                throw Unsupported("$ref", path,
                    $"options that can match the same text at once ({together} here) lead back into the schema itself, so the grammar's work would multiply with every level of nesting. Make the options start differently (a distinct first required property or 'const')");
            }
        }

        var name = options.Count == 1 ? options[0].Expression : Rule(hint, string.Join(" | ", options.Select(o => o.Expression)));
        return Count(name, worst, path);
    }

    /// <summary>How many ways <paramref name="expression"/> may match one text at once (1 unless counted).</summary>
    private long AlternativesOf(string expression) => _alternatives.GetValueOrDefault(expression, 1);

    private string Count(string expression, long alternatives, string path)
    {
        if (alternatives > _maxAlternatives)
        {
            throw Unsupported("(complexity)", path,
                $"up to {alternatives} of its options can match the same text at once (counting nested options), more than the limit of {_maxAlternatives} (a server setting); " +
                "the grammar would follow all of them side by side for every token. Make options start differently (a distinct first required property or 'const'), or merge them");
        }

        if (alternatives > 1)
        {
            _alternatives[expression] = Math.Max(alternatives, AlternativesOf(expression));
        }

        return expression;
    }

    /// <summary>The most alternatives of any of <paramref name="expressions"/>: parts read one after another.</summary>
    private string Sequence(string expression, IEnumerable<string> parts, string path) =>
        Count(expression, parts.Select(AlternativesOf).DefaultIfEmpty(1).Max(), path);

    /// <summary>
    /// Options that differ only in length bounds (minItems/maxItems, minLength/maxLength) become one option per
    /// run of overlapping bounds: "an array of at most 1, or at most 2, ..." is one array of at most 20.
    /// Yields each option with the index it is named by in errors.
    /// </summary>
    private static IEnumerable<(JsonElement Option, int Index)> MergeBounds(JsonElement options)
    {
        string[][] bounds = [["minItems", "maxItems"], ["minLength", "maxLength"]];
        var groups = new Dictionary<string, List<(int Index, int Min, int Max)>>(StringComparer.Ordinal);
        var order = new List<(string? Key, int Index, string[]? Kind)>();
        var i = 0;
        foreach (var option in options.EnumerateArray())
        {
            var index = i++;
            var kind = option.ValueKind != JsonValueKind.Object ? null
                : bounds.Where(b => b.Any(k => option.TryGetProperty(k, out _))).ToArray() is [var only] ? only : null;
            if (kind is null || !kind.All(k => !option.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) && n >= 0))
            {
                order.Add((null, index, null));
                continue;
            }

            var min = option.TryGetProperty(kind[0], out var lo) ? lo.GetInt32() : 0;
            var max = option.TryGetProperty(kind[1], out var hi) ? hi.GetInt32() : int.MaxValue;
            var key = string.Join('\0', kind) + '\0' + CompactJson(Without(option, kind));
            if (!groups.TryGetValue(key, out var members))
            {
                groups[key] = members = [];
                order.Add((key, index, kind));
            }

            members.Add((index, min, max));
        }

        foreach (var (key, index, kind) in order)
        {
            if (key is null || groups[key].Count == 1)
            {
                yield return (options[index], index);
                continue;
            }

            var runs = new List<(int Index, int Min, int Max)>();
            foreach (var member in groups[key].OrderBy(m => m.Min))
            {
                if (runs.Count > 0 && member.Min <= (long)runs[^1].Max + 1)
                {
                    runs[^1] = runs[^1] with { Max = Math.Max(runs[^1].Max, member.Max) };
                }
                else
                {
                    runs.Add(member);
                }
            }

            var template = Without(options[index], kind!);
            foreach (var run in runs)
            {
                yield return (WithBounds(template, kind!, run.Min, run.Max), run.Index);
            }
        }
    }

    private static JsonElement Without(JsonElement schema, string[] keywords)
    {
        var buffer = new ArrayBufferWriter();
        using (var writer = new Utf8JsonWriter(buffer.Stream))
        {
            writer.WriteStartObject();
            foreach (var property in schema.EnumerateObject().Where(p => !keywords.Contains(p.Name)))
            {
                property.WriteTo(writer);
            }

            writer.WriteEndObject();
        }

        return buffer.Parse();
    }

    private static JsonElement WithBounds(JsonElement schema, string[] keywords, int min, int max)
    {
        var buffer = new ArrayBufferWriter();
        using (var writer = new Utf8JsonWriter(buffer.Stream))
        {
            writer.WriteStartObject();
            foreach (var property in schema.EnumerateObject())
            {
                property.WriteTo(writer);
            }

            if (min > 0)
            {
                writer.WriteNumber(keywords[0], min);
            }

            if (max != int.MaxValue)
            {
                writer.WriteNumber(keywords[1], max);
            }

            writer.WriteEndObject();
        }

        return buffer.Parse();
    }

    private sealed class ArrayBufferWriter
    {
        public MemoryStream Stream { get; } = new();

        // The document is kept alive by the element, for as long as the grammar is being built.
        public JsonElement Parse() => JsonDocument.Parse(Stream.ToArray()).RootElement;
    }

    /// <summary>
    /// What text a value of <paramref name="schema"/> can start with, as literal prefixes ("" when anything):
    /// enough to tell whether two options could read the same for a while.
    /// </summary>
    private List<string> Heads(JsonElement schema, int depth)
    {
        var heads = HeadsOf(schema, depth).Distinct(StringComparer.Ordinal).ToList();
        return heads.Count > MaxHeads ? [""] : heads;
    }

    /// <summary>Past this many different starts, a value is taken to start with anything (cheaper, and cautious).</summary>
    private const int MaxHeads = 256;

    private static bool IsLiteral(JsonElement option) =>
        option.ValueKind == JsonValueKind.Object
        && (option.TryGetProperty("const", out _) || option.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 0)
        && option.EnumerateObject().All(p => p.Name is "const" or "enum" || Annotations.Contains(p.Name));

    /// <summary>
    /// Literal texts as a prefix tree of rules: at each branch the next character picks one way, so llama.cpp
    /// follows one path whatever the number of texts (as plain alternatives it would follow every one that still
    /// matches). Named rules rather than nested groups keep llama.cpp's parser from recursing deeply.
    /// </summary>
    private string Choice(string hint, IEnumerable<string> texts)
    {
        var root = new TrieNode();
        foreach (var text in texts)
        {
            var node = root;
            foreach (var rune in text.EnumerateRunes())
            {
                var key = rune.ToString();
                if (!node.Children.TryGetValue(key, out var child))
                {
                    node.Children[key] = child = new TrieNode();
                }

                node = child;
            }

            node.End = true;
        }

        return Emit(root, hint);
    }

    private string Emit(TrieNode node, string hint)
    {
        var parts = new List<string>();
        foreach (var (key, child) in node.Children.OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            var run = new StringBuilder(key);
            var next = child;
            while (!next.End && next.Children.Count == 1)
            {
                var (k, only) = next.Children.First();
                run.Append(k);
                next = only;
            }

            parts.Add(next.Children.Count == 0 ? GbnfLiteral(run.ToString()) : $"{GbnfLiteral(run.ToString())} {Emit(next, hint)}");
        }

        if (parts.Count == 0)
        {
            return "\"\"";
        }

        var body = string.Join(" | ", parts);
        return node.End ? Rule(hint, $"({body})?") : parts.Count == 1 ? body : Rule(hint, body);
    }

    private sealed class TrieNode
    {
        public Dictionary<string, TrieNode> Children { get; } = new(StringComparer.Ordinal);

        public bool End { get; set; }
    }

    private List<string> HeadsOf(JsonElement schema, int depth)
    {
        if (depth > MaxDepth || schema.ValueKind != JsonValueKind.Object)
        {
            return [""];
        }

        if (schema.TryGetProperty("$ref", out var reference))
        {
            var target = reference.ValueKind == JsonValueKind.String ? reference.GetString()! : string.Empty;
            if (_heads.TryGetValue(target, out var known))
            {
                return known;
            }

            // Marked unknown while resolving, so a cycle ends at once; then the real answer, kept for every later use.
            _heads[target] = [""];
            var node = _document;
            foreach (var segment in target.Length > 2 ? target[2..].Split('/') : [])
            {
                if (node.ValueKind != JsonValueKind.Object || !node.TryGetProperty(segment, out node))
                {
                    return [""];
                }
            }

            return _heads[target] = Heads(node, depth + 1);
        }

        if (schema.TryGetProperty("const", out var constant))
        {
            return [CompactJson(constant)];
        }

        if (schema.TryGetProperty("enum", out var values) && values.ValueKind == JsonValueKind.Array)
        {
            return values.EnumerateArray().Select(CompactJson).ToList();
        }

        foreach (var combinator in new[] { "anyOf", "oneOf" })
        {
            if (schema.TryGetProperty(combinator, out var options) && options.ValueKind == JsonValueKind.Array)
            {
                return options.EnumerateArray().SelectMany(o => Heads(o, depth + 1)).ToList();
            }
        }

        if (schema.TryGetProperty("allOf", out var all) && all.ValueKind == JsonValueKind.Array && all.GetArrayLength() == 1)
        {
            return Heads(all[0], depth + 1);
        }

        var types = schema.TryGetProperty("type", out var type)
            ? type.ValueKind == JsonValueKind.String ? [type.GetString()!] : type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.ToString()).ToArray() : []
            : InferTypes(schema);
        return types.Length == 0 ? [""] : types.SelectMany(t => TypeHeads(t, schema)).ToList();
    }

    private static List<string> TypeHeads(string type, JsonElement schema)
    {
        switch (type)
        {
            case "string":
                return ["\""];
            case "number" or "integer":
                return ["-", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
            case "boolean":
                return ["true", "false"];
            case "null":
                return ["null"];
            case "array":
                return ["["];
            case "object":
                // Properties come out required ones first, so a required property names how the object starts.
                var required = schema.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array
                    ? req.EnumerateArray().Where(r => r.ValueKind == JsonValueKind.String).Select(r => r.GetString()!).ToHashSet(StringComparer.Ordinal)
                    : [];
                if (schema.TryGetProperty("properties", out var properties) && properties.ValueKind == JsonValueKind.Object)
                {
                    var names = properties.EnumerateObject().Select(p => p.Name).ToList();
                    if (names.FirstOrDefault(required.Contains) is { } first)
                    {
                        // A discriminator ("type": {"const": "circle"}) first tells the options apart at once.
                        var head = "{" + JsonString(first) + ":";
                        var value = properties.GetProperty(first);
                        return value.ValueKind == JsonValueKind.Object && value.TryGetProperty("const", out var constant) ? [head + CompactJson(constant)]
                            : value.ValueKind == JsonValueKind.Object && value.TryGetProperty("enum", out var values) && values.ValueKind == JsonValueKind.Array
                                ? values.EnumerateArray().Select(v => head + CompactJson(v)).ToList()
                                : [head];
                    }

                    if (names.Count > 0 && schema.TryGetProperty("additionalProperties", out var extra) && extra.ValueKind == JsonValueKind.False)
                    {
                        return [.. names.Select(n => "{" + JsonString(n) + ":"), "{}"];
                    }
                }

                return ["{"];
            default:
                return [""];
        }
    }

    /// <summary>Whether some text could start like both: one prefix is a prefix of the other ("" overlaps all).</summary>
    private static bool Overlap(List<string> a, List<string> b) =>
        a.Any(x => b.Any(y => x.StartsWith(y, StringComparison.Ordinal) || y.StartsWith(x, StringComparison.Ordinal)));

    private static string[] InferTypes(JsonElement schema)
    {
        if (schema.TryGetProperty("properties", out _) || schema.TryGetProperty("additionalProperties", out _) || schema.TryGetProperty("required", out _))
        {
            return ["object"];
        }

        if (schema.TryGetProperty("items", out _) || schema.TryGetProperty("prefixItems", out _))
        {
            return ["array"];
        }

        return [];
    }

    /// <summary>Refuses any constraining keyword next to <paramref name="keyword"/>, which decides the value alone.</summary>
    private void CheckOnly(JsonElement schema, string path, string keyword)
    {
        foreach (var property in schema.EnumerateObject())
        {
            if (property.Name != keyword && !Annotations.Contains(property.Name) && property.Name != "type")
            {
                throw Unsupported(property.Name, path, $"it cannot be combined with '{keyword}'");
            }
        }
    }

    private string VisitType(string type, JsonElement schema, string hint, string path, int depth) => type switch
    {
        "object" => VisitObject(schema, hint, path, depth),
        "array" => VisitArray(schema, hint, path, depth),
        "string" => VisitString(schema, hint, path),
        "integer" or "number" => VisitNumber(schema, type == "integer", hint, path),
        _ => type,
    };

    private string VisitObject(JsonElement schema, string hint, string path, int depth)
    {
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (schema.TryGetProperty("required", out var req))
        {
            if (req.ValueKind != JsonValueKind.Array || req.EnumerateArray().Any(r => r.ValueKind != JsonValueKind.String))
            {
                throw Unsupported("required", path, "'required' must be an array of property names");
            }

            required.UnionWith(req.EnumerateArray().Select(r => r.GetString()!));
        }

        var declared = new List<(string Name, string Pair)>();
        var values = new List<string>();
        if (schema.TryGetProperty("properties", out var properties))
        {
            if (properties.ValueKind != JsonValueKind.Object)
            {
                throw Unsupported("properties", path, "'properties' must be an object");
            }

            if (properties.EnumerateObject().Count() > MaxProperties)
            {
                throw Unsupported("properties", path, $"an object may declare at most {MaxProperties} properties");
            }

            foreach (var p in properties.EnumerateObject())
            {
                var value = Visit(p.Value, $"{hint}-{p.Name}", $"{path}/properties/{p.Name}", depth + 1);
                values.Add(value);
                declared.Add((p.Name, $"{GbnfLiteral(JsonString(p.Name))} \":\" space {value}"));
            }
        }

        if (required.FirstOrDefault(r => declared.All(d => d.Name != r)) is { } missing)
        {
            throw Unsupported("required", path, $"'{missing}' is required but not among 'properties'");
        }

        if (schema.TryGetProperty("additionalProperties", out var additional) && additional.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
        {
            if (declared.Count > 0)
            {
                throw Unsupported("additionalProperties", path, "a schema for additional properties next to 'properties' is not supported; use false");
            }

            var value = Visit(additional, hint + "-value", path + "/additionalProperties", depth + 1);
            var pair = Rule(hint + "-kv", $"{"string"} \":\" space {value}");
            return Sequence(Rule(hint, $"\"{{\" space ({pair} (\",\" space {pair})*)? \"}}\" space"), [value], path);
        }

        if (declared.Count == 0)
        {
            // An object with no declared properties: any object (additional properties allowed by default).
            return additional.ValueKind == JsonValueKind.False ? Rule(hint, "\"{\" space \"}\" space") : "object";
        }

        // Required properties first, in declared order; then each optional one may follow.
        var must = declared.Where(d => required.Contains(d.Name)).Select(d => Rule($"{hint}-{d.Name}-kv", d.Pair)).ToList();
        var may = declared.Where(d => !required.Contains(d.Name)).Select(d => Rule($"{hint}-{d.Name}-kv", d.Pair)).ToList();
        string body;
        if (must.Count > 0)
        {
            body = string.Join(" \",\" space ", must) + string.Concat(may.Select(m => $" (\",\" space {m})?"));
        }
        else
        {
            // Any optional property may come first, then any later one: each tail is a rule, so the grammar stays
            // linear in the number of properties (written out, it would be quadratic).
            var tails = new string[may.Count + 1];
            tails[may.Count] = string.Empty;
            for (var k = may.Count - 1; k >= 1; k--)
            {
                tails[k] = Rule($"{hint}-rest-{k}", $"(\",\" space {may[k]})? {tails[k + 1]}".TrimEnd());
            }

            body = "(" + string.Join(" | ", may.Select((m, i) => $"{m} {tails[i + 1]}".TrimEnd())) + ")?";
        }

        return Sequence(Rule(hint, $"\"{{\" space {body} \"}}\" space"), values, path);
    }

    private string VisitArray(JsonElement schema, string hint, string path, int depth)
    {
        var min = ReadCount(schema, "minItems", path) ?? 0;
        var max = ReadCount(schema, "maxItems", path);
        if (schema.TryGetProperty("prefixItems", out var prefix))
        {
            if (prefix.ValueKind != JsonValueKind.Array || schema.TryGetProperty("items", out var extra) && extra.ValueKind != JsonValueKind.False)
            {
                throw Unsupported("prefixItems", path, "only a fixed tuple ('prefixItems' with 'items': false) is supported");
            }

            var i = 0;
            var items = prefix.EnumerateArray().Select(p => Visit(p, $"{hint}-{i}", $"{path}/prefixItems/{i++}", depth + 1)).ToList();
            return Sequence(Rule(hint, items.Count == 0 ? "\"[\" space \"]\" space" : $"\"[\" space {string.Join(" \",\" space ", items)} \"]\" space"), items, path);
        }

        var item = schema.TryGetProperty("items", out var itemSchema) ? Visit(itemSchema, hint + "-item", path + "/items", depth + 1) : "value";
        if (max is { } m && m < min)
        {
            throw Unsupported("maxItems", path, "'maxItems' is below 'minItems'");
        }

        string list;
        if (max == 0)
        {
            list = string.Empty;
        }
        else
        {
            var rest = (Math.Max(min - 1, 0), max is { } mx ? mx - 1 : (int?)null);
            var repeat = rest switch
            {
                (0, null) => "*",
                (var a, null) => $"{{{a},}}",
                (var a, var b) when a == b => $"{{{a}}}",
                (var a, var b) => $"{{{a},{b}}}",
            };
            list = $"{item} (\",\" space {item}){repeat}";
            if (min == 0)
            {
                list = $"({list})?";
            }
        }

        return Sequence(Rule(hint, $"\"[\" space {list} \"]\" space"), [item], path);
    }

    private string VisitString(JsonElement schema, string hint, string path)
    {
        var min = ReadCount(schema, "minLength", path);
        var max = ReadCount(schema, "maxLength", path);
        if (max < min)
        {
            throw Unsupported("maxLength", path, $"'maxLength' {max} is below 'minLength' {min}, so no string can match");
        }

        var hasFormat = schema.TryGetProperty("format", out var format);
        var hasPattern = schema.TryGetProperty("pattern", out var pattern);
        if (!hasFormat && !hasPattern)
        {
            if (min is null && max is null)
            {
                return "string";
            }

            var repeat = max is { } m ? $"{{{min ?? 0},{m}}}" : $"{{{min},}}";
            return Rule(hint, $"\"\\\"\" char{repeat} \"\\\"\" space");
        }

        var formatName = string.Empty;
        if (hasFormat)
        {
            formatName = format.ValueKind == JsonValueKind.String ? format.GetString()! : string.Empty;
            if (!StringFormats.Patterns.ContainsKey(formatName))
            {
                throw Unsupported("format", path, $"format '{formatName}' is not supported (supported: {string.Join(", ", StringFormats.Patterns.Keys)})");
            }
        }

        if (hasPattern && pattern.ValueKind != JsonValueKind.String)
        {
            throw Unsupported("pattern", path, "'pattern' must be a string");
        }

        var keyword = hasPattern ? "pattern" : "format";
        var key = $"string\0{formatName}\0{(hasPattern ? pattern.GetString() : null)}\0{min}\0{max}";
        if (_automata.TryGetValue(key, out var known))
        {
            return known;
        }

        Dfa dfa;
        try
        {
            var parts = new List<Dfa>();
            if (hasPattern)
            {
                try
                {
                    parts.Add(RegexParser.Compile(pattern.GetString()!, _budget));
                }
                catch (RegexException e)
                {
                    throw Unsupported("pattern", path, e.Message);
                }
            }

            if (hasFormat)
            {
                parts.Add(StringFormats.Automaton(formatName));
            }

            if (min is not null || max is not null)
            {
                parts.Add(Dfa.FromRegex(RegexNode.Repeat(RegexNode.Chars(CharSet.All), min ?? 0, max), _budget));
            }

            dfa = parts[0];
            foreach (var part in parts.Skip(1))
            {
                dfa = dfa.Intersect(part, _budget).Minimize(_budget);
            }
        }
        catch (AutomatonLimitException e)
        {
            throw Unsupported(keyword, path, $"its grammar would be too large ({e.Message}){(min is not null || max is not null ? "; length limits multiply its size" : string.Empty)}");
        }

        if (dfa.IsEmpty)
        {
            var together = new[] { hasPattern ? "'pattern'" : null, hasFormat ? $"format '{formatName}'" : null, min is not null ? "'minLength'" : null, max is not null ? "'maxLength'" : null };
            throw Unsupported(keyword, path, $"no string matches {string.Join(" and ", together.OfType<string>())}, so no value can match");
        }

        return _automata[key] = Automaton(hint, dfa, jsonString: true, keyword, path);
    }

    private string VisitNumber(JsonElement schema, bool integer, string hint, string path)
    {
        var present = NumberKeywords.Where(k => schema.TryGetProperty(k, out _)).ToList();
        if (present.Count == 0)
        {
            return integer ? "integer" : "number";
        }

        var key = (integer ? "integer" : "number") + string.Concat(present.Select(k => $"\0{k}={schema.GetProperty(k).GetRawText()}"));
        if (_automata.TryGetValue(key, out var known))
        {
            return known;
        }

        var lo = Bound(schema, path, lower: true);
        var hi = Bound(schema, path, lower: false);
        var typeName = integer ? "integer" : "number";
        var bounds = string.Join(" and ", present.Where(k => k != "multipleOf").Select(k => $"'{k}' {schema.GetProperty(k).GetRawText()}"));
        var range = integer
            ? NumberLanguage.Integers(lo is { } l ? NumberLanguage.LowestInteger(l) : -NumberLanguage.IntegerCap, hi is { } h ? NumberLanguage.HighestInteger(h) : NumberLanguage.IntegerCap)
            : NumberLanguage.Decimals(lo, hi);
        var upper = present.LastOrDefault(k => k is "maximum" or "exclusiveMaximum") ?? present[0];
        if (range is null)
        {
            throw Unsupported(upper, path,
                $"no {typeName} lies within {bounds} (numbers here have at most {NumberLanguage.MaxDigits} digits before the point), so no value can match");
        }

        (BigInteger Factor, int Decimals)? multiple = schema.TryGetProperty("multipleOf", out var factor) ? ReadFactor(factor, path) : null;
        Dfa dfa;
        try
        {
            dfa = Dfa.FromRegex(range, _budget).Minimize(_budget);
            if (multiple is { } m && !(integer && m.Factor.IsOne && m.Decimals == 0))
            {
                dfa = dfa.Intersect(NumberLanguage.MultiplesOf(m.Factor, m.Decimals, integer), _budget).Minimize(_budget);
            }
        }
        catch (AutomatonLimitException e)
        {
            throw Unsupported(multiple is null ? upper : "multipleOf", path, $"its grammar would be too large ({e.Message})");
        }

        if (dfa.IsEmpty)
        {
            throw Unsupported("multipleOf", path, $"no {typeName}{(bounds.Length > 0 ? " within " + bounds : string.Empty)} is a multiple of {factor.GetRawText()}, so no value can match");
        }

        return _automata[key] = Automaton(hint, dfa, jsonString: false, multiple is null ? upper : "multipleOf", path);
    }

    /// <summary>
    /// The lower (or upper) bound: <c>minimum</c>, <c>exclusiveMinimum</c> as a number (JSON Schema 2020-12) or as
    /// <c>true</c> beside <c>minimum</c> (draft 4, OpenAPI 3.0), whichever binds more.
    /// </summary>
    private NumberBound? Bound(JsonElement schema, string path, bool lower)
    {
        var (inclusive, exclusive) = lower ? ("minimum", "exclusiveMinimum") : ("maximum", "exclusiveMaximum");
        NumberBound? result = null;
        var flag = false;
        if (schema.TryGetProperty(exclusive, out var ex))
        {
            if (ex.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                flag = ex.ValueKind == JsonValueKind.True;
                if (flag && !schema.TryGetProperty(inclusive, out _))
                {
                    throw Unsupported(exclusive, path, $"'{exclusive}': true needs '{inclusive}' beside it");
                }
            }
            else
            {
                result = new NumberBound(ReadNumber(ex, exclusive, path, roundUp: lower), Strict: true);
            }
        }

        if (schema.TryGetProperty(inclusive, out var inc))
        {
            var bound = new NumberBound(ReadNumber(inc, inclusive, path, roundUp: lower), flag);
            if (result is not { } other || (lower ? bound.Scaled > other.Scaled : bound.Scaled < other.Scaled))
            {
                result = bound;
            }
        }

        return result;
    }

    private BigInteger ReadNumber(JsonElement value, string keyword, string path, bool roundUp) =>
        value.ValueKind != JsonValueKind.Number ? throw Unsupported(keyword, path, $"'{keyword}' must be a number")
        : NumberLanguage.Read(value.GetRawText(), roundUp)
            ?? throw Unsupported(keyword, path, $"'{keyword}' may be written with at most {NumberLanguage.MaxBoundText} characters");

    private (BigInteger Factor, int Decimals) ReadFactor(JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Number)
        {
            throw Unsupported("multipleOf", path, "'multipleOf' must be a number");
        }

        return NumberLanguage.ReadFactor(value.GetRawText(), out var why) ?? throw Unsupported("multipleOf", path, why!);
    }

    /// <summary>
    /// One rule per state of <paramref name="dfa"/>, each written as the characters that lead on (inside a JSON
    /// string when <paramref name="jsonString"/>, so escaped where JSON needs it) and, where the automaton accepts,
    /// the end of the value. Returns the rule to use for the value.
    /// </summary>
    private string Automaton(string hint, Dfa dfa, bool jsonString, string keyword, string path)
    {
        if (dfa.Count > MaxAutomatonRules)
        {
            throw Unsupported(keyword, path, $"its grammar would be too large (it needs {dfa.Count} rules, more than {MaxAutomatonRules})");
        }

        _automatonStates += dfa.Count;
        if (_automatonStates > MaxAutomatonStates)
        {
            throw Unsupported(keyword, path, $"the schema's patterns, formats and number bounds together would need more than {MaxAutomatonStates} grammar rules");
        }

        var names = new string[dfa.Count];
        for (var s = 0; s < names.Length; s++)
        {
            names[s] = UniqueName($"{hint}-{s}");
            _rules[names[s]] = string.Empty; // reserved, so the next name differs
        }

        for (var s = 0; s < names.Length; s++)
        {
            var options = new List<string>();
            foreach (var (set, target) in dfa.Transitions[s])
            {
                IEnumerable<string> symbols = jsonString ? GbnfChars.InJsonString(set) : [GbnfChars.Class(set)];
                options.AddRange(symbols.Select(symbol => $"{symbol} {names[target]}"));
            }

            if (dfa.Accepting[s])
            {
                options.Add(jsonString ? "\"\\\"\" space" : "space");
            }

            _rules[names[s]] = string.Join(" | ", options);
            _automatonText += _rules[names[s]].Length;
            if (_automatonText > MaxAutomatonText)
            {
                throw Unsupported(keyword, path, $"the schema's patterns, formats and number bounds together would make a grammar of more than {MaxAutomatonText} characters");
            }
        }

        return jsonString ? Rule(hint, $"\"\\\"\" {names[0]}") : names[0];
    }

    private int? ReadCount(JsonElement schema, string keyword, string path)
    {
        if (!schema.TryGetProperty(keyword, out var value))
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) && n is >= 0 and <= MaxRepetition
            ? n
            : throw Unsupported(keyword, path, $"'{keyword}' must be an integer from 0 to {MaxRepetition} (llama.cpp's grammar cannot count further)");
    }

    private string Ref(JsonElement reference, string path, int depth)
    {
        var target = reference.ValueKind == JsonValueKind.String ? reference.GetString()! : string.Empty;
        if (_refs.TryGetValue(target, out var known))
        {
            if (_resolving.Contains(target))
            {
                _backReferences++;
            }

            return known;
        }

        string[] segments = target.StartsWith("#/$defs/", StringComparison.Ordinal) || target.StartsWith("#/definitions/", StringComparison.Ordinal)
            ? target[2..].Split('/')
            : throw Unsupported("$ref", path, $"only local references to '#/$defs/...' or '#/definitions/...' are supported, not '{target}'");
        var node = _document;
        foreach (var segment in segments)
        {
            if (node.ValueKind != JsonValueKind.Object || !node.TryGetProperty(segment, out node))
            {
                throw Unsupported("$ref", path, $"'{target}' does not point into the schema");
            }
        }

        // Name the rule first so recursive references resolve to it.
        var name = UniqueName("ref-" + segments[^1]);
        _refs[target] = name;
        _resolving.Add(target);
        var body = Visit(node, name + "-body", target, depth + 1);
        _resolving.Remove(target);
        _rules[name] = body;
        return Count(name, AlternativesOf(body), target);
    }

    private static string Literal(JsonElement value)
    {
        return GbnfLiteral(CompactJson(value)) + " space";
    }

    /// <summary>JSON text without insignificant whitespace; non-ASCII characters as themselves.</summary>
    internal static string CompactJson(JsonElement value)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            value.WriteTo(writer);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    internal static string JsonString(string text)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStringValue(text);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>A GBNF string literal matching <paramref name="text"/> exactly.</summary>
    internal static string GbnfLiteral(string text) => StringLiteral.Quote(text, StringLiteralSyntax.Gbnf);
}

/// <summary>A schema keyword the grammar cannot enforce.</summary>
public sealed class UnsupportedSchemaException(FieldRef field, string keyword, string path, string why)
    : InvalidGenerationParameterException(field, names => $"The JSON Schema keyword '{keyword}' at '{(path.Length == 0 ? "/" : path)}' of '{names.Name(field)}' is not supported: {why}. EdgeServer enforces schemas while sampling and does not silently drop keywords.")
{
    public string Keyword { get; } = keyword;
}
