using System.Text.Json;
using System.Text.RegularExpressions;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.OpenAi;

/// <summary>
/// docs/api.md lists every field of OpenAI's CreateChatCompletionRequest with what EdgeServer does with it, and
/// the server knows each of them: none is refused as unknown, while a field outside the spec is.
/// </summary>
[Collection(ServerGroup.Name)]
public partial class RequestFieldTests(ServerFixture server)
{
    [SkippableFact]
    public async Task EverySpecFieldIsDocumentedAndKnown()
    {
        Skip.If(!File.Exists(SharedPaths.OpenApiSpec), SharedPaths.MissingReason(SharedPaths.OpenApiSpec));
        var fields = SpecProperties("CreateChatCompletionRequest");
        Assert.True(fields.Count > 30, $"expected the full request, found {fields.Count} properties");

        var documented = DocumentedFields();
        Assert.Empty(fields.Except(documented));
        Assert.Empty(documented.Except(fields).Except(EdgeServer.OpenAi.RequestFields.Chat.Rows.Where(r => r.Extension).SelectMany(r => r.Names)));

        foreach (var field in fields.Where(f => f is not ("model" or "messages")))
        {
            using var response = await server.PostAsync("/v1/chat/completions",
                $$"""{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_tokens":1,"{{field}}":null}""");
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, $"{field}: null should mean 'not given': {body}");
        }

        using var unknown = await server.PostAsync("/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_tokens":1,"temprature":0}""");
        Assert.Contains("Unrecognized request argument supplied: temprature", await unknown.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    /// <summary>docs/api.md shows the field table the server maps requests with, with its ranges, defaults and limits.</summary>
    [Fact]
    public void TheDocumentedChatFieldTablesAreTheServersTable()
    {
        var section = ChatSection();
        var tables = section.Split("\n\n").Where(block => block.StartsWith("| Field | EdgeServer |", StringComparison.Ordinal)).Select(t => t.TrimEnd('\n') + "\n").ToList();
        string[] expected = [EdgeServer.OpenAi.RequestFields.Chat.ToMarkdown(extensions: false), EdgeServer.OpenAi.RequestFields.Chat.ToMarkdown(extensions: true)];
        if (!tables.SequenceEqual(expected))
        {
            // The tables to paste into docs/api.md, for whoever changed a row.
            var file = Path.Combine(Path.GetTempPath(), "edgeserver-chat-fields.md");
            File.WriteAllText(file, string.Join("\n", expected));
            Assert.Fail($"docs/api.md's chat field tables differ from RequestFields.Chat; the expected tables are in {file}.");
        }
    }

    private static string ChatSection()
    {
        var doc = File.ReadAllText(Path.Combine(SharedPaths.RepositoryRoot, "docs", "api.md")).ReplaceLineEndings("\n");
        var start = doc.IndexOf("## Chat completions: every request field", StringComparison.Ordinal);
        var end = doc.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        return doc[start..end];
    }

    private static HashSet<string> SpecProperties(string schema)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SharedPaths.OpenApiSpec));
        var schemas = doc.RootElement.GetProperty("components").GetProperty("schemas");
        var result = new HashSet<string>(StringComparer.Ordinal);
        void Collect(JsonElement s)
        {
            if (s.TryGetProperty("$ref", out var r))
            {
                Collect(schemas.GetProperty(r.GetString()!.Split('/')[^1]));
            }

            if (s.TryGetProperty("allOf", out var all))
            {
                foreach (var part in all.EnumerateArray())
                {
                    Collect(part);
                }
            }

            if (s.TryGetProperty("properties", out var props))
            {
                result.UnionWith(props.EnumerateObject().Select(p => p.Name));
            }
        }

        Collect(schemas.GetProperty(schema));
        return result;
    }

    /// <summary>Names in backticks in the first cell of the chat field tables' rows (OpenAI's fields and llama-server's extensions).</summary>
    private static HashSet<string> DocumentedFields()
    {
        var fields = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in ChatSection().Split('\n').Where(l => l.StartsWith("| `", StringComparison.Ordinal)))
        {
            fields.UnionWith(Backticked().Matches(line.Split('|')[1]).Select(m => m.Groups[1].Value));
        }

        return fields;
    }

    [GeneratedRegex("`([a-z_]+)`")]
    private static partial Regex Backticked();
}
