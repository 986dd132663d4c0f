using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// How one API names the engine's fields in its errors: top-level fields by its <see cref="FieldTable"/>, nested
/// ones as the chat API does unless the API says otherwise, and limits by their settings.
/// </summary>
internal class ApiFieldNames(FieldTable table, string? maxTokensName = null) : IFieldNames
{
    public static ApiFieldNames Chat { get; } = new(RequestFields.Chat);

    public virtual string Name(FieldRef field)
    {
        if (field.Field == GenerationField.MaxTokens && maxTokensName is not null)
        {
            return maxTokensName;
        }

        return field.Index < 0 && table.NameOf(field.Field) is { } name ? name : FieldNames.Canonical.Name(field);
    }

    public string Setting(GenerationLimit limit) => LimitSettings.Name(limit);
}

/// <summary>Legacy completions: the integer <c>logprobs</c> is the engine's top log probabilities.</summary>
internal sealed class CompletionFieldNames() : ApiFieldNames(RequestFields.Completions)
{
    public static CompletionFieldNames Instance { get; } = new();

    public override string Name(FieldRef field) => field.Field == GenerationField.TopLogprobs ? "logprobs" : base.Name(field);
}

/// <summary>
/// The Responses API: messages are <c>input</c> items (after the system message <c>instructions</c> becomes, when
/// given), and the output format is <c>text.format</c>.
/// </summary>
/// <param name="items">The input item each input message came from (items such as replayed reasoning make none).</param>
internal sealed class ResponsesFieldNames(bool instructions, bool inputIsText, IReadOnlyList<int>? items = null) : ApiFieldNames(RequestFields.Responses)
{
    public override string Name(FieldRef field)
    {
        switch (field.Field)
        {
            case GenerationField.ResponseFormat:
                return "text.format";
            case GenerationField.ResponseFormatSchema:
                return "text.format.schema";
        }

        var name = base.Name(field);
        var message = $"messages[{field.Index}]";
        if (field.Index < 0 || !name.StartsWith(message, StringComparison.Ordinal))
        {
            return name;
        }

        var item = field.Index - (instructions ? 1 : 0);
        if (items is not null && item >= 0 && item < items.Count)
        {
            item = items[item];
        }

        return item < 0 ? "instructions" : inputIsText ? "input" : $"input[{item}]" + name[message.Length..];
    }
}

/// <summary>Embeddings: an input item is <c>input[i]</c> when the input is a list, and <c>input</c> when it is one text or one token list.</summary>
internal sealed class EmbeddingFieldNames(bool inputIsList) : ApiFieldNames(RequestFields.Chat)
{
    public override string Name(FieldRef field) =>
        field.Field == GenerationField.EmbeddingInput && (!inputIsList || field.Index < 0) ? "input" : base.Name(field);
}
