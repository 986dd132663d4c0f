namespace EdgeServer.Inference.Text.Templates;

/// <summary>The template cannot be parsed.</summary>
public sealed class TemplateSyntaxException(string message, int position)
    : Exception($"Chat template syntax error at character {position}: {message}.")
{
    public int Position { get; } = position;
}

/// <summary>The template failed while rendering (an unsupported construct or a type error in it).</summary>
public class TemplateRenderException(string message) : Exception(message);

/// <summary>The template itself refused the input with raise_exception (e.g. roles that do not alternate).</summary>
public sealed class TemplateRaisedException(string message) : TemplateRenderException(message);

internal sealed class LoopBreak : Exception;

internal sealed class LoopContinue : Exception;
