using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EdgeServer.Inference.Text.Templates;

/// <summary>
/// A Jinja2 template as chat templates use it, rendered the way Hugging Face's transformers renders
/// <c>tokenizer.chat_template</c>: trim_blocks and lstrip_blocks, loop controls, tojson without HTML escaping,
/// and the globals raise_exception and strftime_now. Values are Python's: null, bool, long, double, string,
/// <see cref="List{T}"/> of object and <see cref="Dictionary{TKey, TValue}"/> of string to object.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Stmt> _body;

    private JinjaTemplate(List<Stmt> body) => _body = body;

    /// <summary>Throws <see cref="TemplateSyntaxException"/> when the source is not a template this engine can run.</summary>
    public static JinjaTemplate Parse(string source) => new(new JinjaParser(JinjaLexer.Tokenize(source)).ParseTemplate());

    /// <summary>
    /// Throws <see cref="TemplateRaisedException"/> when the template calls raise_exception, and
    /// <see cref="TemplateRenderException"/> for any other failure.
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, TimeProvider? clock = null)
    {
        var globals = new Scope(null);
        var now = (clock ?? TimeProvider.System).GetLocalNow();
        globals.Set("range", new JinjaFunction("range", (a, _) => Range(a)));
        globals.Set("namespace", new JinjaFunction("namespace", (_, k) =>
        {
            var ns = new Namespace();
            foreach (var (key, value) in k)
            {
                ns[key] = value;
            }

            return ns;
        }));
        globals.Set("dict", new JinjaFunction("dict", (_, k) => new Dictionary<string, object?>(k, StringComparer.Ordinal)));
        globals.Set("raise_exception", new JinjaFunction("raise_exception", (a, _) => throw new TemplateRaisedException(a.Count > 0 ? Py.Str(a[0]) : "the template raised an error")));
        globals.Set("strftime_now", new JinjaFunction("strftime_now", (a, _) => Strftime(now, a.Count > 0 ? Py.Str(a[0]) : "%Y-%m-%d")));
        var scope = new Scope(globals);
        foreach (var (name, value) in variables)
        {
            scope.Set(name, value);
        }

        var output = new StringBuilder();
        try
        {
            Stmt.RenderAll(_body, scope, output);
        }
        catch (LoopBreak)
        {
            throw new TemplateRenderException("'break' outside a loop");
        }
        catch (LoopContinue)
        {
            throw new TemplateRenderException("'continue' outside a loop");
        }
        catch (Exception e) when (e is InvalidCastException or ArgumentException or OverflowException or FormatException or IndexOutOfRangeException)
        {
            throw new TemplateRenderException($"the template failed: {e.Message}");
        }

        return output.ToString();
    }

    /// <summary>A JSON value as a template value (objects keep their key order).</summary>
    public static object? FromJson(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => value.EnumerateObject().Aggregate(new Dictionary<string, object?>(StringComparer.Ordinal), (d, p) =>
        {
            d[p.Name] = FromJson(p.Value);
            return d;
        }),
        JsonValueKind.Array => value.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Number => value.TryGetInt64(out var l) ? l : value.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    private static List<object?> Range(List<object?> a)
    {
        long Int(int i) => a[i] is long l ? l : throw new TemplateRenderException("range() takes integers");
        var (start, stop, step) = a.Count switch
        {
            1 => (0L, Int(0), 1L),
            2 => (Int(0), Int(1), 1L),
            3 => (Int(0), Int(1), Int(2)),
            _ => throw new TemplateRenderException("range() takes 1 to 3 arguments"),
        };
        if (step == 0)
        {
            throw new TemplateRenderException("range() step must not be zero");
        }

        var result = new List<object?>();
        for (var i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            result.Add(i);
            if (result.Count > 100_000)
            {
                throw new TemplateRenderException("range() is too long");
            }
        }

        return result;
    }

    /// <summary>Python's strftime for the directives templates use.</summary>
    internal static string Strftime(DateTimeOffset t, string format)
    {
        var c = CultureInfo.InvariantCulture;
        var b = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length)
            {
                b.Append(format[i]);
                continue;
            }

            var d = format[++i];
            b.Append(d switch
            {
                'd' => t.Day.ToString("00", c),
                'm' => t.Month.ToString("00", c),
                'Y' => t.Year.ToString("0000", c),
                'y' => (t.Year % 100).ToString("00", c),
                'H' => t.Hour.ToString("00", c),
                'I' => ((t.Hour + 11) % 12 + 1).ToString("00", c),
                'M' => t.Minute.ToString("00", c),
                'S' => t.Second.ToString("00", c),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'b' => t.ToString("MMM", c),
                'B' => t.ToString("MMMM", c),
                'a' => t.ToString("ddd", c),
                'A' => t.ToString("dddd", c),
                'j' => t.DayOfYear.ToString("000", c),
                '%' => "%",
                _ => "%" + d,
            });
        }

        return b.ToString();
    }
}
