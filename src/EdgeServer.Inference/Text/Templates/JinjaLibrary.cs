using System.Globalization;
using System.Text;

namespace EdgeServer.Inference.Text.Templates;

/// <summary>The str, dict and list methods chat templates call (read-only, as in Hugging Face's sandbox).</summary>
internal static class Methods
{
    public static JinjaFunction? Bind(object target, string name) => target switch
    {
        string s => StringMethod(s, name),
        Namespace => null,
        IDictionary<string, object?> d => DictMethod(d, name),
        List<object?> l => ListMethod(l, name),
        _ => null,
    };

    private static JinjaFunction? StringMethod(string s, string name)
    {
        Func<List<object?>, Dictionary<string, object?>, object?>? body = name switch
        {
            "strip" => (a, _) => Strip(s, a, start: true, end: true),
            "lstrip" => (a, _) => Strip(s, a, start: true, end: false),
            "rstrip" => (a, _) => Strip(s, a, start: false, end: true),
            "upper" => (_, _) => s.ToUpperInvariant(),
            "lower" => (_, _) => s.ToLowerInvariant(),
            "title" => (_, _) => Filters.Title(s),
            "capitalize" => (_, _) => Filters.Capitalize(s),
            "startswith" => (a, _) => Prefixes(a).Any(p => s.StartsWith(p, StringComparison.Ordinal)),
            "endswith" => (a, _) => Prefixes(a).Any(p => s.EndsWith(p, StringComparison.Ordinal)),
            "split" => (a, k) => Split(s, Arg(a, k, 0, "sep"), Arg(a, k, 1, "maxsplit")),
            "splitlines" => (_, _) => (s.EndsWith('\n') ? s[..^1] : s).Split('\n').Select(x => (object?)x).ToList(),
            "replace" => (a, _) => a.Count >= 2 ? s.Replace(Py.Str(a[0]), Py.Str(a[1]), StringComparison.Ordinal) : throw new TemplateRenderException("replace() takes two arguments"),
            "find" => (a, _) => (long)s.IndexOf(Py.Str(a[0]), StringComparison.Ordinal),
            "count" => (a, _) => (long)CountOf(s, Py.Str(a[0])),
            "join" => (a, _) => string.Join(s, Py.Iterate(a[0]).Select(Py.Str)),
            "isdigit" => (_, _) => s.Length > 0 && s.All(char.IsDigit),
            "isspace" => (_, _) => s.Length > 0 && s.All(char.IsWhiteSpace),
            "format" => (a, _) => Format(s, a),
            _ => null,
        };
        return body is null ? null : new JinjaFunction(name, body);
    }

    private static JinjaFunction? DictMethod(IDictionary<string, object?> d, string name)
    {
        Func<List<object?>, Dictionary<string, object?>, object?>? body = name switch
        {
            "items" => (_, _) => d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList(),
            "keys" => (_, _) => d.Keys.Select(k => (object?)k).ToList(),
            "values" => (_, _) => d.Values.ToList(),
            "get" => (a, _) => a.Count > 0 && a[0] is string k && d.TryGetValue(k, out var v) ? v : a.Count > 1 ? a[1] : null,
            _ => null,
        };
        return body is null ? null : new JinjaFunction(name, body);
    }

    private static JinjaFunction? ListMethod(List<object?> l, string name)
    {
        Func<List<object?>, Dictionary<string, object?>, object?>? body = name switch
        {
            "index" => (a, _) => (long)l.FindIndex(x => Py.Equal(x, a[0])),
            "count" => (a, _) => (long)l.Count(x => Py.Equal(x, a[0])),
            _ => null,
        };
        return body is null ? null : new JinjaFunction(name, body);
    }

    private static object? Arg(List<object?> a, Dictionary<string, object?> k, int i, string name) =>
        i < a.Count ? a[i] : k.TryGetValue(name, out var v) ? v : null;

    private static IEnumerable<string> Prefixes(List<object?> a) => a.Count == 0
        ? throw new TemplateRenderException("startswith/endswith take an argument")
        : a[0] is List<object?> many ? many.Select(Py.Str) : [Py.Str(a[0])];

    private static string Strip(string s, List<object?> a, bool start, bool end)
    {
        if (a.Count > 0 && a[0] is string chars)
        {
            var set = chars.ToCharArray();
            return start && end ? s.Trim(set) : start ? s.TrimStart(set) : s.TrimEnd(set);
        }

        return start && end ? s.Trim() : start ? s.TrimStart() : s.TrimEnd();
    }

    private static List<object?> Split(string s, object? sep, object? maxsplit)
    {
        var max = maxsplit is long m && m >= 0 ? (int)m + 1 : int.MaxValue;
        if (sep is null or Undefined)
        {
            return s.Split((char[]?)null, max, StringSplitOptions.RemoveEmptyEntries).Select(x => (object?)x.Trim()).ToList();
        }

        var separator = Py.Str(sep);
        return separator.Length == 0
            ? throw new TemplateRenderException("empty separator")
            : s.Split(separator, max).Select(x => (object?)x).ToList();
    }

    private static int CountOf(string s, string sub)
    {
        if (sub.Length == 0)
        {
            return s.Length + 1;
        }

        var n = 0;
        for (var i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal))
        {
            n++;
        }

        return n;
    }

    private static string Format(string s, List<object?> a)
    {
        var b = new StringBuilder();
        var next = 0;
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '{' && i + 1 < s.Length && s[i + 1] == '}')
            {
                b.Append(Py.Str(next < a.Count ? a[next++] : throw new TemplateRenderException("format(): too few arguments")));
                i++;
            }
            else
            {
                b.Append(s[i]);
            }
        }

        return b.ToString();
    }
}

/// <summary>Jinja2's filters and tests, as far as chat templates use them.</summary>
internal static class Filters
{
    public static object? Apply(string name, object? value, List<object?> args, Dictionary<string, object?> kwargs, Scope scope)
    {
        value = Py.Unwrap(value);
        object? Arg(int i, string key, object? fallback = null) => i < args.Count ? args[i] : kwargs.TryGetValue(key, out var v) ? v : fallback;
        switch (name)
        {
            case "trim":
                return Py.Str(value).Trim();
            case "length" or "count":
                return value switch
                {
                    string s => (long)s.EnumerateRunes().Count(),
                    List<object?> l => (long)l.Count,
                    IDictionary<string, object?> d => (long)d.Count,
                    Undefined => 0L,
                    _ => throw new TemplateRenderException($"object of type '{Py.TypeName(value)}' has no length"),
                };
            case "string":
                return Py.Str(value);
            case "tojson":
                return Json.Dumps(value, Arg(0, "indent") is long indent ? (int)indent : null);
            case "lower":
                return Py.Str(value).ToLowerInvariant();
            case "upper":
                return Py.Str(value).ToUpperInvariant();
            case "title":
                return Title(Py.Str(value));
            case "capitalize":
                return Capitalize(Py.Str(value));
            case "default" or "d":
                var whenFalsy = Py.Truthy(Arg(1, "boolean", false));
                return value is Undefined || (whenFalsy && !Py.Truthy(value)) ? Arg(0, "default_value", string.Empty) : value;
            case "first":
                return Py.Iterate(value).FirstOrDefault(Undefined.Instance);
            case "last":
                return value is List<object?> { Count: > 0 } last ? last[^1] : value is string ls && ls.Length > 0 ? ls[^1..] : Undefined.Instance;
            case "list":
                return Py.Iterate(value).ToList();
            case "join":
                var attribute = Arg(1, "attribute") as string;
                return string.Join(Py.Str(Arg(0, "d", string.Empty)), Py.Iterate(value).Select(x => Py.Str(attribute is null ? x : Py.GetItem(x, attribute))));
            case "replace":
                return Py.Str(value).Replace(Py.Str(Arg(0, "old")), Py.Str(Arg(1, "new")), StringComparison.Ordinal);
            case "int":
                return value switch
                {
                    long l => l,
                    double d => (long)d,
                    bool b => b ? 1L : 0L,
                    string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) => parsed,
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return value switch
                {
                    long l => (double)l,
                    double d => d,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed) => parsed,
                    _ => Arg(0, "default", 0.0),
                };
            case "abs":
                return value switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), _ => throw new TemplateRenderException("abs() needs a number") };
            case "round":
                var digits = Arg(0, "precision") is long p ? (int)p : 0;
                return value is long or double ? Math.Round(Convert.ToDouble(value, CultureInfo.InvariantCulture), digits, MidpointRounding.ToEven) : throw new TemplateRenderException("round() needs a number");
            case "items":
                return value is IDictionary<string, object?> dict ? dict.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList() : throw new TemplateRenderException("items() needs a mapping");
            case "dictsort":
                return value is IDictionary<string, object?> ds
                    ? ds.OrderBy(kv => kv.Key, StringComparer.OrdinalIgnoreCase).Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()
                    : throw new TemplateRenderException("dictsort needs a mapping");
            case "reverse":
                return value is string rs ? new string(rs.Reverse().ToArray()) : Py.Iterate(value).Reverse().ToList();
            case "sort":
                var by = Arg(2, "attribute") as string;
                var sorted = Py.Iterate(value).ToList();
                sorted.Sort((x, y) => Py.CompareForSort(by is null ? x : Py.GetItem(x, by), by is null ? y : Py.GetItem(y, by)));
                if (Py.Truthy(Arg(0, "reverse", false)))
                {
                    sorted.Reverse();
                }

                return sorted;
            case "unique":
                var unique = new List<object?>();
                foreach (var x in Py.Iterate(value))
                {
                    if (!unique.Any(u => Py.Equal(u, x)))
                    {
                        unique.Add(x);
                    }
                }

                return unique;
            case "sum":
                return Py.Iterate(value).Aggregate(Arg(1, "start", 0L), (acc, x) => Py.Binary("+", acc, x));
            case "indent":
                return Indent(Py.Str(value), Arg(0, "width", 4L), Py.Truthy(Arg(1, "first", false)), Py.Truthy(Arg(2, "blank", false)));
            case "safe":
                return value is string safe ? new Markup(safe) : value;
            case "min" or "max":
                var by2 = Arg(1, "attribute") as string;
                var items = Py.Iterate(value).ToList();
                if (items.Count == 0)
                {
                    return Undefined.Instance;
                }

                object? Key(object? x) => by2 is null ? x : Py.GetItem(x, by2);
                return items.Aggregate((a, b) => (Py.CompareForSort(Key(b), Key(a)) < 0) == (name == "min") ? b : a);
            case "map" or "select" or "reject" or "selectattr" or "rejectattr" when !Py.Truthy(value):
                return new List<object?>();
            case "map":
                if (kwargs.TryGetValue("attribute", out var attr))
                {
                    return Py.Iterate(value).Select(x => Py.GetItem(x, attr)).ToList();
                }

                var filter = Py.Str(Arg(0, "filter"));
                return Py.Iterate(value).Select(x => Apply(filter, x, args.Skip(1).ToList(), [], scope)).ToList();
            case "select" or "reject":
                var test = args.Count > 0 ? Py.Str(args[0]) : null;
                return Py.Iterate(value).Where(x => (test is null ? Py.Truthy(x) : Test(test, x, args.Skip(1).ToList())) == (name == "select")).ToList();
            case "selectattr" or "rejectattr":
                var key = Py.Str(Arg(0, "attribute"));
                var attrTest = args.Count > 1 ? Py.Str(args[1]) : null;
                return Py.Iterate(value).Where(x =>
                {
                    var v = Py.GetItem(x, key);
                    return (attrTest is null ? Py.Truthy(v) : Test(attrTest, v, args.Skip(2).ToList())) == (name == "selectattr");
                }).ToList();
            case "wordcount":
                return (long)Py.Str(value).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            default:
                throw new TemplateRenderException($"the filter '{name}' is not supported");
        }
    }

    public static bool Test(string name, object? value, List<object?> args) => TestUnwrapped(name, Py.Unwrap(value), args);

    private static bool TestUnwrapped(string name, object? value, List<object?> args) => name switch
    {
        "defined" => value is not Undefined,
        "undefined" => value is Undefined,
        "none" => value is null,
        "string" => value is string,
        "number" => value is long or double,
        "integer" => value is long,
        "float" => value is double,
        "boolean" => value is bool,
        "true" => value is true,
        "false" => value is false,
        "mapping" => value is IDictionary<string, object?>,
        "iterable" => value is string or List<object?> or IDictionary<string, object?>,
        "sequence" => value is string or List<object?> or IDictionary<string, object?>,
        "callable" => value is JinjaFunction,
        "lower" => value is string lo && string.Equals(lo, lo.ToLowerInvariant(), StringComparison.Ordinal),
        "upper" => value is string up && string.Equals(up, up.ToUpperInvariant(), StringComparison.Ordinal),
        "odd" => value is long o && o % 2 != 0,
        "even" => value is long e && e % 2 == 0,
        "divisibleby" => value is long n && args.Count > 0 && args[0] is long by && by != 0 && n % by == 0,
        "equalto" or "eq" or "==" or "sameas" => args.Count > 0 && Py.Equal(value, args[0]),
        "ne" or "!=" => args.Count > 0 && !Py.Equal(value, args[0]),
        "gt" or "greaterthan" or ">" => Py.Truthy(Py.Binary(">", value, args[0])),
        "ge" or ">=" => Py.Truthy(Py.Binary(">=", value, args[0])),
        "lt" or "lessthan" or "<" => Py.Truthy(Py.Binary("<", value, args[0])),
        "le" or "<=" => Py.Truthy(Py.Binary("<=", value, args[0])),
        "in" => args.Count > 0 && Py.Contains(args[0], value),
        _ => throw new TemplateRenderException($"the test '{name}' is not supported"),
    };

    public static string Title(string s)
    {
        var b = new StringBuilder(s.Length);
        var previousIsLetter = false;
        foreach (var c in s)
        {
            b.Append(previousIsLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousIsLetter = char.IsLetter(c);
        }

        return b.ToString();
    }

    public static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    private static string Indent(string s, object? width, bool first, bool blank)
    {
        var pad = width is long w ? new string(' ', (int)w) : Py.Str(width);
        var lines = s.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            if ((i > 0 || first) && (blank || lines[i].Length > 0))
            {
                lines[i] = pad + lines[i];
            }
        }

        return string.Join('\n', lines);
    }
}

/// <summary>json.dumps(value, ensure_ascii=False, indent=indent) — the tojson Hugging Face gives chat templates.</summary>
internal static class Json
{
    public static string Dumps(object? value, int? indent)
    {
        var b = new StringBuilder();
        Write(b, value, indent, 0);
        return b.ToString();
    }

    private static void Write(StringBuilder b, object? value, int? indent, int level)
    {
        switch (Py.Unwrap(value))
        {
            case null:
                b.Append("null");
                break;
            case bool v:
                b.Append(v ? "true" : "false");
                break;
            case long l:
                b.Append(l.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                b.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : Py.FloatRepr(d));
                break;
            case string s:
                StringLiteral.Append(b, s, StringLiteralSyntax.Json);
                break;
            case List<object?> list:
                WriteContainer(b, '[', ']', list.Count, indent, level, i => Write(b, list[i], indent, level + 1));
                break;
            case IDictionary<string, object?> dict:
                var pairs = dict.ToList();
                WriteContainer(b, '{', '}', pairs.Count, indent, level, i =>
                {
                    StringLiteral.Append(b, pairs[i].Key, StringLiteralSyntax.Json);
                    b.Append(": ");
                    Write(b, pairs[i].Value, indent, level + 1);
                });
                break;
            case Undefined:
                throw new TemplateRenderException("an undefined value cannot be converted to JSON");
            default:
                throw new TemplateRenderException($"'{Py.TypeName(value)}' cannot be converted to JSON");
        }
    }

    private static void WriteContainer(StringBuilder b, char open, char close, int count, int? indent, int level, Action<int> item)
    {
        b.Append(open);
        if (count == 0)
        {
            b.Append(close);
            return;
        }

        for (var i = 0; i < count; i++)
        {
            if (i > 0)
            {
                b.Append(indent is null ? ", " : ",");
            }

            if (indent is { } n)
            {
                b.Append('\n').Append(' ', n * (level + 1));
            }

            item(i);
        }

        if (indent is { } m)
        {
            b.Append('\n').Append(' ', m * level);
        }

        b.Append(close);
    }
}
