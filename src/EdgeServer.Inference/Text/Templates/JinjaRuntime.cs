using System.Globalization;
using System.Text;

namespace EdgeServer.Inference.Text.Templates;

/// <summary>A missing variable or key: empty when printed, false when tested, an error when used further.</summary>
internal sealed class Undefined
{
    public static Undefined Instance { get; } = new(null);

    private Undefined(string? name) => Name = name;

    public string? Name { get; }

    public static Undefined Named(string name) => new(name);
}

/// <summary>
/// A string marked safe (the <c>safe</c> filter). As in Jinja2, adding a plain string to it HTML-escapes the
/// plain one; a template that relies on that (Functionary's) renders as it does under Jinja2.
/// </summary>
internal sealed record Markup(string Value)
{
    public static string Escape(string s) => s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
        .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&#34;", StringComparison.Ordinal).Replace("'", "&#39;", StringComparison.Ordinal);

    public override string ToString() => Value;
}

/// <summary>namespace(): the one object whose attributes a template may set, so values escape loop scopes.</summary>
internal sealed class Namespace() : Dictionary<string, object?>(StringComparer.Ordinal);

internal sealed class JinjaFunction(string name, Func<List<object?>, Dictionary<string, object?>, object?> body)
{
    public string Name { get; } = name;

    public object? Invoke(List<object?> args, Dictionary<string, object?> kwargs) => body(args, kwargs);
}

internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);

    public object? Get(string name)
    {
        for (var s = this; s is not null; s = s.Parent)
        {
            if (s._vars.TryGetValue(name, out var value))
            {
                return value;
            }
        }

        return Undefined.Named(name);
    }

    public Scope? Parent { get; } = parent;

    public void Set(string name, object? value) => _vars[name] = value;
}

/// <summary>Python semantics for the values templates handle: None, bool, int, float, str, list, dict.</summary>
internal static class Py
{
    /// <summary>A <see cref="Markup"/> behaves as its text everywhere but in '+'.</summary>
    public static object? Unwrap(object? v) => v is Markup m ? m.Value : v;

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        IDictionary<string, object?> => "dict",
        List<object?> => "list",
        Undefined => "undefined",
        JinjaFunction => "function",
        _ => v.GetType().Name,
    };

    public static bool Truthy(object? v) => Unwrap(v) switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        IDictionary<string, object?> d => d.Count > 0,
        List<object?> l => l.Count > 0,
        _ => true,
    };

    public static IEnumerable<object?> Iterate(object? v) => Unwrap(v) switch
    {
        null => throw new TemplateRenderException("'NoneType' object is not iterable"),
        Undefined => [],
        string s => s.EnumerateRunes().Select(r => (object?)r.ToString()),
        List<object?> l => l,
        IDictionary<string, object?> d => d.Keys,
        _ => throw new TemplateRenderException($"'{TypeName(v)}' object is not iterable"),
    };

    /// <summary>str(): what {{ value }} prints.</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Markup m => m.Value,
        Undefined => string.Empty,
        _ => Repr(v),
    };

    public static string Repr(object? v) => v switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        string s => StringLiteral.Quote(s, StringLiteralSyntax.PythonRepr),
        List<object?> l => "[" + string.Join(", ", l.Select(Repr)) + "]",
        Namespace n => "<Namespace " + string.Join(", ", n.Select(kv => kv.Key + "=" + Repr(kv.Value))) + ">",
        IDictionary<string, object?> d => "{" + string.Join(", ", d.Select(kv => StringLiteral.Quote(kv.Key, StringLiteralSyntax.PythonRepr) + ": " + Repr(kv.Value))) + "}",
        Undefined => string.Empty,
        JinjaFunction f => $"<function {f.Name}>",
        _ => v.ToString() ?? string.Empty,
    };

    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d))
        {
            return "nan";
        }

        if (double.IsInfinity(d))
        {
            return d > 0 ? "inf" : "-inf";
        }

        var r = d.ToString("R", CultureInfo.InvariantCulture);
        if (r.Contains('E', StringComparison.Ordinal))
        {
            // Python: 1e-05, 1e+16
            var parts = r.Split('E');
            var exponent = int.Parse(parts[1], CultureInfo.InvariantCulture);
            return parts[0] + "e" + (exponent < 0 ? "-" : "+") + Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture);
        }

        if (Math.Abs(d) >= 1e16)
        {
            var e = d.ToString("0.################e+00", CultureInfo.InvariantCulture);
            return e;
        }

        return r.Contains('.', StringComparison.Ordinal) ? r : r + ".0";
    }

    public static bool Equal(object? a, object? b) => (Unwrap(a), Unwrap(b)) switch
    {
        (null, null) => true,
        (Undefined, Undefined) => true,
        (null, _) or (_, null) or (Undefined, _) or (_, Undefined) => false,
        (string x, string y) => x == y,
        (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equal(p.First, p.Second)),
        (IDictionary<string, object?> x, IDictionary<string, object?> y) =>
            x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var other) && Equal(kv.Value, other)),
        _ when IsNumber(a) && IsNumber(b) => ToDouble(a) == ToDouble(b),
        _ => ReferenceEquals(a, b) || (a?.Equals(b) ?? false),
    };

    private static bool IsNumber(object? v) => v is long or double or bool;

    private static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new TemplateRenderException($"'{TypeName(v)}' is not a number"),
    };

    private static int Compare(object? a, object? b) => (Unwrap(a), Unwrap(b)) switch
    {
        (string x, string y) => string.CompareOrdinal(x, y),
        (List<object?> x, List<object?> y) => CompareLists(x, y),
        _ when IsNumber(a) && IsNumber(b) => ToDouble(a).CompareTo(ToDouble(b)),
        _ => throw new TemplateRenderException($"'<' not supported between '{TypeName(a)}' and '{TypeName(b)}'"),
    };

    private static int CompareLists(List<object?> x, List<object?> y)
    {
        for (var i = 0; i < Math.Min(x.Count, y.Count); i++)
        {
            if (!Equal(x[i], y[i]))
            {
                return Compare(x[i], y[i]);
            }
        }

        return x.Count.CompareTo(y.Count);
    }

    public static int CompareForSort(object? a, object? b) => Compare(a, b);

    public static object? Binary(string op, object? a, object? b)
    {
        if (op == "+" && (a is Markup || b is Markup) && (a is string or Markup) && (b is string or Markup))
        {
            string Part(object? x) => x is Markup m ? m.Value : Markup.Escape((string)x!);
            return new Markup(Part(a) + Part(b));
        }

        (a, b) = (a is Markup ma ? ma.Value : a, b is Markup mb ? mb.Value : b);
        switch (op)
        {
            case "==": return Equal(a, b);
            case "!=": return !Equal(a, b);
            case "<": return Compare(a, b) < 0;
            case ">": return Compare(a, b) > 0;
            case "<=": return Compare(a, b) <= 0;
            case ">=": return Compare(a, b) >= 0;
            case "~": return Str(a) + Str(b);
            case "in": return Contains(b, a);
        }

        if (op == "+")
        {
            switch (a, b)
            {
                case (string x, string y): return x + y;
                case (List<object?> x, List<object?> y): return x.Concat(y).ToList();
            }
        }

        if (op == "*")
        {
            switch (a, b)
            {
                case (string s, long n): return string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, n)));
                case (List<object?> l, long n): return Enumerable.Repeat(l, (int)Math.Max(0, n)).SelectMany(x => x).ToList();
            }
        }

        if (!IsNumber(a) || !IsNumber(b))
        {
            throw new TemplateRenderException($"unsupported operand types for {op}: '{TypeName(a)}' and '{TypeName(b)}'");
        }

        if (a is not double && b is not double && op != "/")
        {
            var x = a is bool ba ? (ba ? 1L : 0L) : (long)a!;
            var y = b is bool bb ? (bb ? 1L : 0L) : (long)b!;
            // Typed as object: a switch over long and double arms would widen every result to double.
            return op switch
            {
                "+" => (object)(x + y),
                "-" => x - y,
                "*" => x * y,
                "//" => y == 0 ? throw new TemplateRenderException("integer division by zero") : (long)Math.Floor((double)x / y),
                "%" => y == 0 ? throw new TemplateRenderException("integer modulo by zero") : ((x % y) + y) % y,
                "**" => y >= 0 ? (object)(long)Math.Pow(x, y) : Math.Pow(x, y),
                _ => throw new TemplateRenderException($"unknown operator {op}"),
            };
        }

        var p = ToDouble(a);
        var q = ToDouble(b);
        return op switch
        {
            "+" => p + q,
            "-" => p - q,
            "*" => p * q,
            "/" => q == 0 ? throw new TemplateRenderException("division by zero") : p / q,
            "//" => Math.Floor(p / q),
            "%" => p - (q * Math.Floor(p / q)),
            "**" => Math.Pow(p, q),
            _ => throw new TemplateRenderException($"unknown operator {op}"),
        };
    }

    public static bool Contains(object? container, object? item) => Unwrap(container) switch
    {
        string s => Unwrap(item) is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw new TemplateRenderException("'in <string>' requires a string on the left"),
        List<object?> l => l.Any(x => Equal(x, item)),
        IDictionary<string, object?> d => item is string k && d.ContainsKey(k),
        Undefined => false,
        _ => throw new TemplateRenderException($"argument of type '{TypeName(container)}' is not iterable"),
    };

    public static long? OptionalInt(object? v) => v switch
    {
        null or Undefined => null,
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new TemplateRenderException($"slice indices must be integers, not '{TypeName(v)}'"),
    };

    public static object? GetItem(object? target, object? key)
    {
        (target, key) = (Unwrap(target), Unwrap(key));
        switch (target)
        {
            case IDictionary<string, object?> d:
                if (key is string k && d.TryGetValue(k, out var value))
                {
                    return value;
                }

                return key is string name && Methods.Bind(target, name) is { } method ? method : Undefined.Named(Str(key));
            case List<object?> l when key is long i:
                var index = i < 0 ? l.Count + i : i;
                return index >= 0 && index < l.Count ? l[(int)index] : Undefined.Instance;
            case string s when key is long i:
                var runes = s.EnumerateRunes().ToList();
                var at = i < 0 ? runes.Count + i : i;
                return at >= 0 && at < runes.Count ? runes[(int)at].ToString() : Undefined.Instance;
            case Undefined u:
                throw new TemplateRenderException($"'{u.Name ?? "value"}' is undefined");
            case null:
                throw new TemplateRenderException("'None' has no attribute or item " + Repr(key));
            default:
                return key is string attr ? GetAttribute(target, attr) : Undefined.Instance;
        }
    }

    public static object? GetAttribute(object? target, string name)
    {
        target = Unwrap(target);
        if (target is Undefined u)
        {
            throw new TemplateRenderException($"'{u.Name ?? "value"}' is undefined, so it has no attribute '{name}'");
        }

        if (target is null)
        {
            throw new TemplateRenderException($"'None' has no attribute '{name}'");
        }

        // Like Jinja2: a method of the type first, then a key.
        if (target is not Namespace && Methods.Bind(target, name) is { } method)
        {
            return method;
        }

        if (target is IDictionary<string, object?> d)
        {
            return d.TryGetValue(name, out var value) ? value : Undefined.Named(name);
        }

        return Undefined.Named(name);
    }

    public static object? Slice(object? target, long? start, long? stop, long? step)
    {
        target = Unwrap(target);
        var s = step ?? 1;
        if (s == 0)
        {
            throw new TemplateRenderException("slice step cannot be zero");
        }

        List<object?> items = target switch
        {
            string str => str.EnumerateRunes().Select(r => (object?)r.ToString()).ToList(),
            List<object?> l => l,
            _ => throw new TemplateRenderException($"'{TypeName(target)}' cannot be sliced"),
        };
        var n = items.Count;
        long Clamp(long? v, long dflt, long lo, long hi)
        {
            if (v is not { } x)
            {
                return dflt;
            }

            if (x < 0)
            {
                x += n;
            }

            return Math.Clamp(x, lo, hi);
        }

        var result = new List<object?>();
        if (s > 0)
        {
            for (var i = Clamp(start, 0, 0, n); i < Clamp(stop, n, 0, n); i += s)
            {
                result.Add(items[(int)i]);
            }
        }
        else
        {
            for (var i = Clamp(start, n - 1, -1, n - 1); i > Clamp(stop, -1, -1, n - 1); i += s)
            {
                result.Add(items[(int)i]);
            }
        }

        return target is string ? string.Concat(result.Cast<string>()) : result;
    }
}
