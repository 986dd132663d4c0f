using System.Text.Json;

namespace EdgeServer.TestSupport;

/// <summary>
/// Validates JSON against a schema in OpenAI's OpenAPI document (components.schemas). Covers what that document
/// uses for responses: $ref, type (including type arrays and "null"), nullable, enum, const, properties, required,
/// additionalProperties, items, anyOf, oneOf (as "at least one") and allOf.
/// </summary>
public sealed class OpenApiSchemaValidator
{
    private readonly JsonDocument _document;
    private readonly JsonElement _schemas;

    private OpenApiSchemaValidator(JsonDocument document)
    {
        _document = document;
        _schemas = document.RootElement.GetProperty("components").GetProperty("schemas");
    }

    public static OpenApiSchemaValidator Load(string path) => new(JsonDocument.Parse(File.ReadAllBytes(path)));

    public bool HasSchema(string name) => _schemas.TryGetProperty(name, out _);

    /// <summary>Every violation, each with the JSON path where it is; empty when valid.</summary>
    public IReadOnlyList<string> Validate(string schemaName, JsonElement instance)
    {
        var errors = new List<string>();
        Check(_schemas.GetProperty(schemaName), instance, "$", errors, depth: 0);
        return errors;
    }

    public IReadOnlyList<string> Validate(string schemaName, string json)
    {
        using var doc = JsonDocument.Parse(json);
        return Validate(schemaName, doc.RootElement);
    }

    private void Check(JsonElement schema, JsonElement value, string path, List<string> errors, int depth)
    {
        if (depth > 64)
        {
            errors.Add($"{path}: schema nesting too deep");
            return;
        }

        if (schema.ValueKind == JsonValueKind.True)
        {
            return;
        }

        if (schema.TryGetProperty("$ref", out var reference))
        {
            Check(Resolve(reference.GetString()!), value, path, errors, depth + 1);
            return;
        }

        if (value.ValueKind == JsonValueKind.Null && schema.TryGetProperty("nullable", out var nullable) && nullable.GetBoolean())
        {
            return;
        }

        if (schema.TryGetProperty("allOf", out var allOf))
        {
            foreach (var sub in allOf.EnumerateArray())
            {
                Check(sub, value, path, errors, depth + 1);
            }
        }

        foreach (var keyword in new[] { "anyOf", "oneOf" })
        {
            if (schema.TryGetProperty(keyword, out var options))
            {
                var branchErrors = new List<string>();
                var matched = false;
                foreach (var option in options.EnumerateArray())
                {
                    var attempt = new List<string>();
                    Check(option, value, path, attempt, depth + 1);
                    if (attempt.Count == 0)
                    {
                        matched = true;
                        break;
                    }

                    branchErrors.AddRange(attempt);
                }

                if (!matched)
                {
                    errors.Add($"{path}: matches none of {keyword} ({string.Join("; ", branchErrors.Take(6))})");
                }
            }
        }

        if (schema.TryGetProperty("type", out var type) && !TypeMatches(type, value))
        {
            errors.Add($"{path}: expected type {type.GetRawText()}, got {value.ValueKind}");
            return;
        }

        if (schema.TryGetProperty("enum", out var allowed) && !allowed.EnumerateArray().Any(a => JsonEquals(a, value)))
        {
            errors.Add($"{path}: {value.GetRawText()} is not one of {allowed.GetRawText()}");
        }

        if (schema.TryGetProperty("const", out var constant) && !JsonEquals(constant, value))
        {
            errors.Add($"{path}: {value.GetRawText()} is not {constant.GetRawText()}");
        }

        if (value.ValueKind == JsonValueKind.Object)
        {
            CheckObject(schema, value, path, errors, depth);
        }
        else if (value.ValueKind == JsonValueKind.Array && schema.TryGetProperty("items", out var items))
        {
            var i = 0;
            foreach (var item in value.EnumerateArray())
            {
                Check(items, item, $"{path}[{i++}]", errors, depth + 1);
            }
        }
    }

    private void CheckObject(JsonElement schema, JsonElement value, string path, List<string> errors, int depth)
    {
        if (schema.TryGetProperty("required", out var required))
        {
            foreach (var name in required.EnumerateArray())
            {
                if (!value.TryGetProperty(name.GetString()!, out _))
                {
                    errors.Add($"{path}: missing required property '{name.GetString()}'");
                }
            }
        }

        schema.TryGetProperty("properties", out var properties);
        foreach (var property in value.EnumerateObject())
        {
            if (properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(property.Name, out var propertySchema))
            {
                Check(propertySchema, property.Value, $"{path}.{property.Name}", errors, depth + 1);
            }
            else if (schema.TryGetProperty("additionalProperties", out var additional))
            {
                if (additional.ValueKind == JsonValueKind.False)
                {
                    errors.Add($"{path}: property '{property.Name}' is not allowed");
                }
                else if (additional.ValueKind == JsonValueKind.Object)
                {
                    Check(additional, property.Value, $"{path}.{property.Name}", errors, depth + 1);
                }
            }
        }
    }

    private JsonElement Resolve(string reference)
    {
        const string prefix = "#/components/schemas/";
        if (!reference.StartsWith(prefix, StringComparison.Ordinal))
        {
            throw new NotSupportedException($"Reference '{reference}' is outside components.schemas.");
        }

        return _schemas.GetProperty(reference[prefix.Length..]);
    }

    private static bool TypeMatches(JsonElement type, JsonElement value) => type.ValueKind == JsonValueKind.Array
        ? type.EnumerateArray().Any(t => KindMatches(t.GetString()!, value))
        : KindMatches(type.GetString()!, value);

    private static bool KindMatches(string type, JsonElement value) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => value.ValueKind == JsonValueKind.Null,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _),
        _ => false,
    };

    private static bool JsonEquals(JsonElement a, JsonElement b) => a.ValueKind == b.ValueKind && a.ValueKind switch
    {
        JsonValueKind.String => a.GetString() == b.GetString(),
        JsonValueKind.Number => a.GetDouble() == b.GetDouble(),
        _ => a.GetRawText() == b.GetRawText(),
    };
}
