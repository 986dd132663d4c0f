using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EdgeServer.Inference.Sampling;

/// <summary>
/// Turns a JSON Schema into a GBNF grammar (llama.cpp's grammar language) whose every sentence is JSON that
/// validates against the schema. A keyword the grammar cannot enforce is refused with
/// <see cref="UnsupportedSchemaException"/> naming it, never silently dropped.
/// Whitespace is limited to one optional space between tokens, and numbers to 16 digits, so a small model
/// cannot wander off into endless padding.
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
        ["string"] = new(StringComparer.Ordinal) { "type", "minLength", "maxLength", "format" },
        ["number"] = new(StringComparer.Ordinal) { "type" },
        ["integer"] = new(StringComparer.Ordinal) { "type" },
        ["boolean"] = new(StringComparer.Ordinal) { "type" },
        ["null"] = new(StringComparer.Ordinal) { "type" },
    };

    private static readonly Dictionary<string, string> Formats = new(StringComparer.Ordinal)
    {
        ["date"] = "\"\\\"\" date \"\\\"\" space",
        ["time"] = "\"\\\"\" time \"\\\"\" space",
        ["date-time"] = "\"\\\"\" date \"T\" time \"\\\"\" space",
        ["uuid"] = "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12} \"\\\"\" space",
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
        ("date", "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])"),
        ("time", "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"),
    ];

    private JsonElement _document;
    private string _param;
    private readonly Dictionary<string, string> _rules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _byBody = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _refs = new(StringComparer.Ordinal);

    private JsonSchemaGrammar(JsonElement document, string param)
    {
        _document = document;
        _param = param;
    }

    /// <summary>A grammar for any JSON object (response_format json_object).</summary>
    public static string AnyObject() => Build(_ => "object");

    /// <summary>A grammar for JSON valid against <paramref name="schema"/>; <paramref name="param"/> names it in errors.</summary>
    public static string FromSchema(JsonElement schema, string param) => Build(g => g.Visit(schema, "root-value", param, 0), schema, param);

    /// <summary>The GBNF expression for <paramref name="schema"/> inside a larger grammar (tool calls), with its rules.</summary>
    internal static string Compose(Func<Func<JsonElement, string, string, string>, string> root) =>
        Build(g => root((schema, hint, param) =>
        {
            // Each schema resolves its own $refs.
            g._document = schema;
            g._param = param;
            g._refs.Clear();
            return g.Visit(schema, hint, param, 0);
        }));

    private static string Build(Func<JsonSchemaGrammar, string> root, JsonElement document = default, string param = "")
    {
        var g = new JsonSchemaGrammar(document, param);
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

    private UnsupportedSchemaException Unsupported(string keyword, string path, string why) => new(_param, keyword, path, why);

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

            return "(" + string.Join(" | ", values.EnumerateArray().Select(Literal)) + ")";
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

                var i = 0;
                var alternatives = options.EnumerateArray().Select(o => Visit(o, $"{hint}-{i}", $"{path}/{combinator}/{i++}", depth + 1)).ToList();
                return Rule(hint, string.Join(" | ", alternatives));
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

        var parts = types.Select(t => VisitType(t, schema, types.Length > 1 ? $"{hint}-{t}" : hint, path, depth)).ToList();
        return parts.Count == 1 ? parts[0] : Rule(hint, string.Join(" | ", parts));
    }

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
        if (schema.TryGetProperty("properties", out var properties))
        {
            if (properties.ValueKind != JsonValueKind.Object)
            {
                throw Unsupported("properties", path, "'properties' must be an object");
            }

            foreach (var p in properties.EnumerateObject())
            {
                var value = Visit(p.Value, $"{hint}-{p.Name}", $"{path}/properties/{p.Name}", depth + 1);
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
            return Rule(hint, $"\"{{\" space ({pair} (\",\" space {pair})*)? \"}}\" space");
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
            var alternatives = may.Select((m, i) => m + string.Concat(may.Skip(i + 1).Select(n => $" (\",\" space {n})?")));
            body = "(" + string.Join(" | ", alternatives) + ")?";
        }

        return Rule(hint, $"\"{{\" space {body} \"}}\" space");
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
            return Rule(hint, items.Count == 0 ? "\"[\" space \"]\" space" : $"\"[\" space {string.Join(" \",\" space ", items)} \"]\" space");
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

        return Rule(hint, $"\"[\" space {list} \"]\" space");
    }

    private string VisitString(JsonElement schema, string hint, string path)
    {
        if (schema.TryGetProperty("format", out var format))
        {
            var name = format.ValueKind == JsonValueKind.String ? format.GetString()! : string.Empty;
            if (!Formats.TryGetValue(name, out var body))
            {
                throw Unsupported("format", path, $"format '{name}' is not supported (supported: {string.Join(", ", Formats.Keys)})");
            }

            if (schema.TryGetProperty("minLength", out _) || schema.TryGetProperty("maxLength", out _))
            {
                throw Unsupported("minLength", path, "length limits cannot be combined with 'format'");
            }

            return Rule(hint, body);
        }

        var min = ReadCount(schema, "minLength", path);
        var max = ReadCount(schema, "maxLength", path);
        if (min is null && max is null)
        {
            return "string";
        }

        var repeat = max is { } m ? $"{{{min ?? 0},{m}}}" : $"{{{min},}}";
        return Rule(hint, $"\"\\\"\" char{repeat} \"\\\"\" space");
    }

    private int? ReadCount(JsonElement schema, string keyword, string path)
    {
        if (!schema.TryGetProperty(keyword, out var value))
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) && n is >= 0 and <= 10_000
            ? n
            : throw Unsupported(keyword, path, $"'{keyword}' must be an integer from 0 to 10000");
    }

    private string Ref(JsonElement reference, string path, int depth)
    {
        var target = reference.ValueKind == JsonValueKind.String ? reference.GetString()! : string.Empty;
        if (_refs.TryGetValue(target, out var known))
        {
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
        var body = Visit(node, name + "-body", target, depth + 1);
        _rules[name] = body;
        return name;
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
    internal static string GbnfLiteral(string text)
    {
        var b = new StringBuilder("\"");
        foreach (var c in text)
        {
            switch (c)
            {
                case '"': b.Append("\\\""); break;
                case '\\': b.Append("\\\\"); break;
                case '\n': b.Append("\\n"); break;
                case '\r': b.Append("\\r"); break;
                case '\t': b.Append("\\t"); break;
                case < ' ': b.Append("\\x").Append(((int)c).ToString("X2", CultureInfo.InvariantCulture)); break;
                default: b.Append(c); break;
            }
        }

        return b.Append('"').ToString();
    }
}

/// <summary>A schema keyword the grammar cannot enforce.</summary>
public sealed class UnsupportedSchemaException(string param, string keyword, string path, string why)
    : InvalidGenerationParameterException(param, $"The JSON Schema keyword '{keyword}' at '{(path.Length == 0 ? "/" : path)}' is not supported: {why}. EdgeServer enforces schemas while sampling and does not silently drop keywords.")
{
    public string Keyword { get; } = keyword;
}
