using System.Globalization;

namespace EdgeServer.Inference;

/// <summary>The valid values of a numeric field: from <see cref="Min"/> to <see cref="Max"/>, the minimum itself excluded when <see cref="MinExclusive"/>.</summary>
public sealed record FieldRange(double Min, double Max, bool MinExclusive = false)
{
    public bool Contains(double value) => double.IsFinite(value) && (MinExclusive ? value > Min : value >= Min) && value <= Max;

    /// <summary>"0 to 2", "greater than 0 and at most 1", "at least -1".</summary>
    public string Describe()
    {
        var min = Format(Min);
        if (Max >= int.MaxValue)
        {
            return MinExclusive ? $"greater than {min}" : $"at least {min}";
        }

        return MinExclusive ? $"greater than {min} and at most {Format(Max)}" : $"from {min} to {Format(Max)}";
    }

    /// <summary>"0 to 2", "above 0, up to 1", "at least 0", for tables.</summary>
    public string Short() => Max >= int.MaxValue
        ? (MinExclusive ? "above " : "at least ") + Format(Min)
        : MinExclusive ? $"above {Format(Min)}, up to {Format(Max)}" : $"{Format(Min)} to {Format(Max)}";

    public static string Format(double value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// The engine's table of field rules: the range and default of each numeric field. <see cref="GenerationRequestValidator"/>
/// checks against it, and the host's request field table shows it, so a range is written once.
/// </summary>
public static class GenerationFields
{
    /// <summary>Most alternatives reported per generated token.</summary>
    public const int MaxTopLogprobs = 20;

    /// <summary>OpenAI's limit for function names; its spec gives none for a message's name, so the same one.</summary>
    public const int MaxNameLength = 64;

    public const int MaxTools = 128;

    public const int MaxEmbeddingInputs = 2048;

    private static readonly Dictionary<GenerationField, FieldRange> Ranges = new()
    {
        [GenerationField.Temperature] = new(0, 2),
        [GenerationField.TopP] = new(0, 1, MinExclusive: true),
        [GenerationField.TopK] = new(0, int.MaxValue),
        [GenerationField.MinP] = new(0, 1),
        [GenerationField.PresencePenalty] = new(-2, 2),
        [GenerationField.FrequencyPenalty] = new(-2, 2),
        [GenerationField.RepeatPenalty] = new(0, 10, MinExclusive: true),
        [GenerationField.RepeatLastN] = new(-1, int.MaxValue),
        [GenerationField.TopLogprobs] = new(0, MaxTopLogprobs),
        [GenerationField.LogitBias] = new(-100, 100),
        [GenerationField.MaxTokens] = new(1, int.MaxValue),
        [GenerationField.Choices] = new(1, int.MaxValue),
    };

    /// <summary>The range of a numeric field (for <see cref="GenerationField.LogitBias"/>: of each bias), or null.</summary>
    public static FieldRange? Range(GenerationField field) => Ranges.GetValueOrDefault(field);

    /// <summary>The value a field has when a request leaves it out, as text; null when it has none worth showing.</summary>
    public static string? Default(GenerationField field)
    {
        var d = SamplingParameters.Default;
        static string F(float value) => value.ToString(CultureInfo.InvariantCulture);
        return field switch
        {
            GenerationField.Temperature => F(d.Temperature),
            GenerationField.TopP => F(d.TopP),
            GenerationField.TopK => F(d.TopK),
            GenerationField.MinP => F(d.MinP),
            GenerationField.PresencePenalty => F(d.PresencePenalty),
            GenerationField.FrequencyPenalty => F(d.FrequencyPenalty),
            GenerationField.RepeatPenalty => F(d.RepeatPenalty),
            GenerationField.RepeatLastN => F(d.RepeatLastN),
            GenerationField.TopLogprobs => "0",
            GenerationField.Choices => "1",
            _ => null,
        };
    }
}
