using System.Text;

namespace EdgeServer.Inference.Text.Templates;

internal sealed record Arguments(List<Expr> Positional, List<(string Name, Expr Value)> Named)
{
    public (List<object?> Positional, Dictionary<string, object?> Named) Evaluate(Scope scope) =>
        (Positional.Select(p => p.Eval(scope)).ToList(), Named.ToDictionary(n => n.Name, n => n.Value.Eval(scope)));
}

internal abstract class Stmt
{
    public abstract void Render(Scope scope, StringBuilder output);

    public static void RenderAll(List<Stmt> body, Scope scope, StringBuilder output)
    {
        foreach (var stmt in body)
        {
            stmt.Render(scope, output);
        }
    }

    /// <summary>
    /// Sets the one target to <paramref name="value"/>, or unpacks it into several as Python does
    /// (<c>for k, v in ...</c>, <c>set a, b = ...</c>); <paramref name="targetsAre"/> names them in the error.
    /// </summary>
    protected static void Assign(Scope scope, List<string> targets, object? value, string targetsAre)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], value);
            return;
        }

        var parts = Py.Iterate(value).ToList();
        if (parts.Count != targets.Count)
        {
            throw new TemplateRenderException($"cannot unpack {parts.Count} values into {targets.Count} {targetsAre}");
        }

        for (var i = 0; i < targets.Count; i++)
        {
            scope.Set(targets[i], parts[i]);
        }
    }
}

internal sealed class TextStmt(string text) : Stmt
{
    public override void Render(Scope scope, StringBuilder output) => output.Append(text);
}

internal sealed class OutputStmt(Expr expr) : Stmt
{
    public override void Render(Scope scope, StringBuilder output) => output.Append(Py.Str(expr.Eval(scope)));
}

internal sealed class BlockStmt(List<Stmt> body) : Stmt
{
    public override void Render(Scope scope, StringBuilder output) => RenderAll(body, scope, output);
}

internal sealed class DoStmt(Expr expr) : Stmt
{
    public override void Render(Scope scope, StringBuilder output) => expr.Eval(scope);
}

internal sealed class IfStmt(List<(Expr? Condition, List<Stmt> Body)> branches) : Stmt
{
    public override void Render(Scope scope, StringBuilder output)
    {
        foreach (var (condition, body) in branches)
        {
            if (condition is null || Py.Truthy(condition.Eval(scope)))
            {
                RenderAll(body, scope, output);
                return;
            }
        }
    }
}

internal sealed class BreakStmt : Stmt
{
    public override void Render(Scope scope, StringBuilder output) => throw new LoopBreak();
}

internal sealed class ContinueStmt : Stmt
{
    public override void Render(Scope scope, StringBuilder output) => throw new LoopContinue();
}

internal sealed class ForStmt(List<string> targets, Expr iterable, Expr? filter, List<Stmt> body, List<Stmt>? otherwise) : Stmt
{
    public override void Render(Scope scope, StringBuilder output)
    {
        var source = iterable.Eval(scope);
        var items = source is IDictionary<string, object?> dict ? dict.Keys.Cast<object?>().ToList() : Py.Iterate(source).ToList();
        if (filter is not null)
        {
            items = items.Where(item =>
            {
                var probe = new Scope(scope);
                Bind(probe, item);
                return Py.Truthy(filter.Eval(probe));
            }).ToList();
        }

        if (items.Count == 0)
        {
            if (otherwise is not null)
            {
                RenderAll(otherwise, scope, output);
            }

            return;
        }

        for (var i = 0; i < items.Count; i++)
        {
            var inner = new Scope(scope);
            Bind(inner, items[i]);
            inner.Set("loop", Loop(items, i));
            try
            {
                RenderAll(body, inner, output);
            }
            catch (LoopContinue)
            {
            }
            catch (LoopBreak)
            {
                break;
            }
        }
    }

    private void Bind(Scope scope, object? item) => Assign(scope, targets, item, "loop variables");

    private static Dictionary<string, object?> Loop(List<object?> items, int i) => new(StringComparer.Ordinal)
    {
        ["index"] = (long)(i + 1),
        ["index0"] = (long)i,
        ["revindex"] = (long)(items.Count - i),
        ["revindex0"] = (long)(items.Count - i - 1),
        ["first"] = i == 0,
        ["last"] = i == items.Count - 1,
        ["length"] = (long)items.Count,
        ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance,
        ["nextitem"] = i + 1 < items.Count ? items[i + 1] : Undefined.Instance,
        ["cycle"] = new JinjaFunction("cycle", (args, _) => args.Count == 0 ? null : args[i % args.Count]),
    };
}

internal sealed class SetStmt(List<string> targets, string? attribute, Expr value) : Stmt
{
    public override void Render(Scope scope, StringBuilder output)
    {
        var result = value.Eval(scope);
        if (attribute is not null)
        {
            if (scope.Get(targets[0]) is not Namespace ns)
            {
                throw new TemplateRenderException($"cannot set '{targets[0]}.{attribute}': only namespace() objects take attributes");
            }

            ns[attribute] = result;
            return;
        }

        Assign(scope, targets, result, "names");
    }
}

internal sealed class SetBlockStmt(string target, List<Stmt> body) : Stmt
{
    public override void Render(Scope scope, StringBuilder output)
    {
        var captured = new StringBuilder();
        RenderAll(body, scope, captured);
        scope.Set(target, captured.ToString());
    }
}

internal sealed class FilterBlockStmt(FilterExpr filter, List<Stmt> body) : Stmt
{
    public override void Render(Scope scope, StringBuilder output)
    {
        var captured = new StringBuilder();
        RenderAll(body, scope, captured);
        output.Append(Py.Str(filter.Apply(captured.ToString(), scope)));
    }
}

internal sealed class MacroStmt(string name, List<(string Name, Expr? Default)> parameters, List<Stmt> body) : Stmt
{
    public override void Render(Scope scope, StringBuilder output)
    {
        var definedIn = scope;
        scope.Set(name, new JinjaFunction(name, (args, kwargs) =>
        {
            var frame = new Scope(definedIn);
            for (var i = 0; i < parameters.Count; i++)
            {
                var (p, defaultValue) = parameters[i];
                object? value = i < args.Count ? args[i]
                    : kwargs.TryGetValue(p, out var named) ? named
                    : defaultValue is not null ? defaultValue.Eval(frame)
                    : Undefined.Named(p);
                frame.Set(p, value);
            }

            frame.Set("varargs", args.Skip(parameters.Count).ToList());
            var result = new StringBuilder();
            RenderAll(body, frame, result);
            return result.ToString();
        }));
    }
}

internal abstract class Expr
{
    public abstract object? Eval(Scope scope);
}

internal sealed class ConstExpr(object? value) : Expr
{
    public override object? Eval(Scope scope) => value;
}

internal sealed class NameExpr(string name) : Expr
{
    public override object? Eval(Scope scope) => scope.Get(name);
}

internal sealed class ListExpr(List<Expr> items) : Expr
{
    public override object? Eval(Scope scope) => items.Select(i => i.Eval(scope)).ToList();
}

internal sealed class DictExpr(List<(Expr Key, Expr Value)> pairs) : Expr
{
    public override object? Eval(Scope scope)
    {
        var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (key, value) in pairs)
        {
            dict[Py.Str(key.Eval(scope))] = value.Eval(scope);
        }

        return dict;
    }
}

internal sealed class ConditionalExpr(Expr condition, Expr then, Expr? otherwise) : Expr
{
    public override object? Eval(Scope scope) =>
        Py.Truthy(condition.Eval(scope)) ? then.Eval(scope) : otherwise is null ? Undefined.Instance : otherwise.Eval(scope);
}

internal sealed class OrExpr(Expr left, Expr right) : Expr
{
    public override object? Eval(Scope scope)
    {
        var l = left.Eval(scope);
        return Py.Truthy(l) ? l : right.Eval(scope);
    }
}

internal sealed class AndExpr(Expr left, Expr right) : Expr
{
    public override object? Eval(Scope scope)
    {
        var l = left.Eval(scope);
        return Py.Truthy(l) ? right.Eval(scope) : l;
    }
}

internal sealed class NotExpr(Expr operand) : Expr
{
    public override object? Eval(Scope scope) => !Py.Truthy(operand.Eval(scope));
}

internal sealed class NegExpr(Expr operand) : Expr
{
    public override object? Eval(Scope scope) => operand.Eval(scope) switch
    {
        long l => (object)(-l),
        double d => -d,
        bool b => b ? -1L : 0L,
        var v => throw new TemplateRenderException($"bad operand type for unary -: '{Py.TypeName(v)}'"),
    };
}

internal sealed class BinaryExpr(string op, Expr left, Expr right) : Expr
{
    public override object? Eval(Scope scope) => Py.Binary(op, left.Eval(scope), right.Eval(scope));
}

internal sealed class AttributeExpr(Expr target, string name) : Expr
{
    public override object? Eval(Scope scope) => Py.GetAttribute(target.Eval(scope), name);
}

internal sealed class IndexExpr(Expr target, Expr index) : Expr
{
    public override object? Eval(Scope scope) => Py.GetItem(target.Eval(scope), index.Eval(scope));
}

internal sealed class SliceExpr(Expr target, Expr? start, Expr? stop, Expr? step) : Expr
{
    public override object? Eval(Scope scope) =>
        Py.Slice(target.Eval(scope), Py.OptionalInt(start?.Eval(scope)), Py.OptionalInt(stop?.Eval(scope)), Py.OptionalInt(step?.Eval(scope)));
}

internal sealed class CallExpr(Expr target, Arguments arguments) : Expr
{
    public override object? Eval(Scope scope)
    {
        var callee = target.Eval(scope);
        var (args, kwargs) = arguments.Evaluate(scope);
        return callee switch
        {
            JinjaFunction f => f.Invoke(args, kwargs),
            Undefined u => throw new TemplateRenderException($"'{u.Name ?? "value"}' is undefined and cannot be called"),
            _ => throw new TemplateRenderException($"'{Py.TypeName(callee)}' object is not callable"),
        };
    }
}

internal sealed class FilterExpr(Expr target, string name, Arguments arguments) : Expr
{
    public override object? Eval(Scope scope) => Apply(target.Eval(scope), scope);

    public object? Apply(object? value, Scope scope)
    {
        var (args, kwargs) = arguments.Evaluate(scope);
        return Filters.Apply(name, value, args, kwargs, scope);
    }
}

internal sealed class TestExpr(Expr target, string name, Arguments arguments) : Expr
{
    public override object? Eval(Scope scope)
    {
        var (args, _) = arguments.Evaluate(scope);
        return Filters.Test(name, target.Eval(scope), args);
    }
}
