using System.Text.Json;
using EdgeServer.Inference.Text.Templates;

namespace EdgeServer.Inference.Tests.Text.Templates;

/// <summary>
/// Renders real models' chat templates (Text/Templates/Fixtures/*.jinja) with each conversation in
/// conversations.json and compares with the output of Python's jinja2 configured as Hugging Face's
/// apply_chat_template (written by Fixtures/render-reference.py), character for character.
/// </summary>
public sealed class ChatTemplateReferenceTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Text", "Templates", "Fixtures");

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        var conversations = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "conversations.json")));
        foreach (var template in Directory.GetFiles(Fixtures, "*.jinja").Order(StringComparer.Ordinal))
        {
            foreach (var conversation in conversations.RootElement.EnumerateObject())
            {
                data.Add(Path.GetFileNameWithoutExtension(template), conversation.Name);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersLikeTheReference(string template, string conversation)
    {
        var source = File.ReadAllText(Path.Combine(Fixtures, template + ".jinja"));
        var input = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "conversations.json"))).RootElement.GetProperty(conversation);
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = JinjaTemplate.FromJson(input.GetProperty("messages")),
            ["tools"] = input.TryGetProperty("tools", out var tools) ? JinjaTemplate.FromJson(tools) : null,
            ["documents"] = null,
            ["add_generation_prompt"] = true,
            ["bos_token"] = "<s>",
            ["eos_token"] = "</s>",
        };

        var parsed = JinjaTemplate.Parse(source);
        var clock = new FixedClock(new DateTimeOffset(2024, 7, 26, 10, 30, 0, TimeSpan.Zero));
        var basePath = Path.Combine(Fixtures, $"{template}.{conversation}");
        if (File.Exists(basePath + ".error.txt"))
        {
            var error = File.ReadAllText(basePath + ".error.txt");
            var e = Assert.ThrowsAny<TemplateRenderException>(() => parsed.Render(variables, clock));
            if (error.StartsWith("raised: ", StringComparison.Ordinal))
            {
                var raised = Assert.IsType<TemplateRaisedException>(e);
                Assert.Equal(error["raised: ".Length..], raised.Message);
            }

            return;
        }

        var expected = File.ReadAllText(basePath + ".txt");
        Assert.Equal(expected, parsed.Render(variables, clock));
    }
}
