using System.Text.Json.Nodes;

namespace EdgeServer.TestSupport;

/// <summary>JSON schemas built to make a grammar costly, for the hostile-input tests and the soak tool.</summary>
public static class HostileSchemas
{
    /// <summary>
    /// <paramref name="depth"/> levels, each an anyOf of <paramref name="width"/> arrays of the next level. With
    /// <paramref name="tagged"/>, each array ends in its own constant, so the options read alike until then;
    /// otherwise they differ only in maxItems.
    /// </summary>
    public static string Nested(int depth, int width, bool tagged)
    {
        var defs = new JsonObject();
        for (var level = 0; level < depth; level++)
        {
            var next = level + 1 == depth ? (JsonNode)new JsonObject { ["type"] = "integer" } : new JsonObject { ["$ref"] = $"#/$defs/l{level + 1}" };
            var options = new JsonArray();
            for (var j = 1; j <= width; j++)
            {
                options.Add(tagged
                    ? new JsonObject { ["type"] = "array", ["prefixItems"] = new JsonArray(next.DeepClone(), new JsonObject { ["const"] = $"t{j}" }), ["items"] = false }
                    : new JsonObject { ["type"] = "array", ["items"] = next.DeepClone(), ["maxItems"] = j });
            }

            defs[$"l{level}"] = new JsonObject { ["anyOf"] = options };
        }

        return new JsonObject { ["$ref"] = "#/$defs/l0", ["$defs"] = defs }.ToJsonString();
    }

}
