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
/// given, and the conversation of <c>previous_response_id</c>), tools are flat (<c>tools[i].name</c>), and the
/// output format is <c>text.format</c>.
/// </summary>
/// <param name="items">The input item each input message came from (items such as replayed reasoning make none).</param>
internal sealed class ResponsesFieldNames(bool instructions, bool inputIsText, IReadOnlyList<int>? items = null) : ApiFieldNames(RequestFields.Responses)
{
    /// <summary>Messages of the stored conversation that come before the input's.</summary>
    public int Earlier { get; init; }

    public override string Name(FieldRef field)
    {
        switch (field.Field)
        {
            case GenerationField.ResponseFormat:
                return "text.format";
            case GenerationField.ResponseFormatSchema:
                return "text.format.schema";
            case GenerationField.ToolName:
                return $"tools[{field.Index}].name";
            case GenerationField.ToolParameters:
                return $"tools[{field.Index}].parameters";
            case GenerationField.ToolStrict:
                return $"tools[{field.Index}].strict";
        }

        var name = base.Name(field);
        var message = $"messages[{field.Index}]";
        if (field.Index < 0 || !name.StartsWith(message, StringComparison.Ordinal))
        {
            return name;
        }

        var item = field.Index - (instructions ? 1 : 0);
        if (item < 0)
        {
            return "instructions";
        }

        if (item < Earlier)
        {
            return "previous_response_id";
        }

        item -= Earlier;
        if (items is not null && item < items.Count)
        {
            item = items[item];
        }

        if (inputIsText)
        {
            return "input";
        }

        // A function_call item's fields are its own: call_id and name, not chat's tool_calls[j].
        return field.Field switch
        {
            GenerationField.ToolCallId => $"input[{item}].call_id",
            GenerationField.ToolCallName => $"input[{item}].name",
            GenerationField.MessageToolCallId => $"input[{item}].call_id",
            _ => $"input[{item}]" + name[message.Length..],
        };
    }
}

/// <summary>Embeddings: an input item is <c>input[i]</c> when the input is a list, and <c>input</c> when it is one text or one token list.</summary>
internal sealed class EmbeddingFieldNames(bool inputIsList) : ApiFieldNames(RequestFields.Chat)
{
    public override string Name(FieldRef field) =>
        field.Field == GenerationField.EmbeddingInput && (!inputIsList || field.Index < 0) ? "input" : base.Name(field);
}
