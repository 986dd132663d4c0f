using System.Globalization;

namespace EdgeServer.Inference.Text.Templates;

/// <summary>Parses Jinja2 tokens into the statement and expression trees that <see cref="JinjaTemplate"/> runs.</summary>
internal sealed class JinjaParser(List<Token> tokens)
{
    private int _pos;

    private Token Current => tokens[_pos];

    public List<Stmt> ParseTemplate()
    {
        var body = ParseBody(out var stop);
        if (stop is not null)
        {
            throw Error($"unexpected '{stop}'");
        }

        return body;
    }

    /// <summary>Statements until the end of input or a block tag this level does not own (returned in <paramref name="stop"/>).</summary>
    private List<Stmt> ParseBody(out string? stop, params string[] terminators)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.End:
                    if (terminators.Length > 0)
                    {
                        throw Error($"expected one of {string.Join(", ", terminators.Select(x => $"'{x}'"))} before the end of the template");
                    }

                    stop = null;
                    return body;
                case TokenKind.Text:
                    body.Add(new TextStmt(t.Value));
                    _pos++;
                    break;
                case TokenKind.VariableBegin:
                    _pos++;
                    body.Add(new OutputStmt(ParseExpression()));
                    Expect(TokenKind.VariableEnd);
                    break;
                case TokenKind.BlockBegin:
                    var name = tokens[_pos + 1];
                    if (name.Kind == TokenKind.Name && terminators.Contains(name.Value))
                    {
                        _pos += 2;
                        stop = name.Value;
                        return body;
                    }

                    _pos++;
                    body.Add(ParseStatement());
                    break;
                default:
                    throw Error($"unexpected {t}");
            }
        }
    }

    private Stmt ParseStatement()
    {
        var keyword = Current;
        if (keyword.Kind != TokenKind.Name)
        {
            throw Error($"expected a statement name, found {keyword}");
        }

        _pos++;
        switch (keyword.Value)
        {
            case "if":
                return ParseIf();
            case "for":
                return ParseFor();
            case "set":
                return ParseSet();
            case "macro":
                return ParseMacro();
            case "break":
                Expect(TokenKind.BlockEnd);
                return new BreakStmt();
            case "continue":
                Expect(TokenKind.BlockEnd);
                return new ContinueStmt();
            case "do":
                var expr = ParseExpression();
                Expect(TokenKind.BlockEnd);
                return new DoStmt(expr);
            case "generation":
                // Hugging Face's marker for assistant tokens; it renders its body unchanged.
                Expect(TokenKind.BlockEnd);
                var body = ParseBody(out _, "endgeneration");
                Expect(TokenKind.BlockEnd);
                return new BlockStmt(body);
            case "filter":
                var filter = ParseFilterCall(new ConstExpr(null));
                Expect(TokenKind.BlockEnd);
                var inner = ParseBody(out _, "endfilter");
                Expect(TokenKind.BlockEnd);
                return new FilterBlockStmt(filter, inner);
            default:
                throw Error($"the statement '{keyword.Value}' is not supported");
        }
    }

    private IfStmt ParseIf()
    {
        var branches = new List<(Expr?, List<Stmt>)>();
        var condition = ParseExpression();
        while (true)
        {
            Expect(TokenKind.BlockEnd);
            var body = ParseBody(out var stop, "elif", "else", "endif");
            branches.Add((condition, body));
            if (stop == "elif")
            {
                condition = ParseExpression();
                continue;
            }

            if (stop == "else")
            {
                Expect(TokenKind.BlockEnd);
                branches.Add((null, ParseBody(out _, "endif")));
            }

            Expect(TokenKind.BlockEnd);
            return new IfStmt(branches);
        }
    }

    private ForStmt ParseFor()
    {
        var targets = new List<string> { ExpectName() };
        while (Current.IsOperator(","))
        {
            _pos++;
            targets.Add(ExpectName());
        }

        ExpectName("in");
        var iterable = ParseExpression(allowConditional: false);
        Expr? filter = null;
        if (Current.IsName("if"))
        {
            _pos++;
            filter = ParseExpression(allowConditional: false);
        }

        if (Current.IsName("recursive"))
        {
            throw Error("recursive loops are not supported");
        }

        Expect(TokenKind.BlockEnd);
        var body = ParseBody(out var stop, "else", "endfor");
        List<Stmt>? otherwise = null;
        if (stop == "else")
        {
            Expect(TokenKind.BlockEnd);
            otherwise = ParseBody(out _, "endfor");
        }

        Expect(TokenKind.BlockEnd);
        return new ForStmt(targets, iterable, filter, body, otherwise);
    }

    private Stmt ParseSet()
    {
        var first = ExpectName();
        string? attribute = null;
        var targets = new List<string> { first };
        if (Current.IsOperator("."))
        {
            _pos++;
            attribute = ExpectName();
        }
        else
        {
            while (Current.IsOperator(","))
            {
                _pos++;
                targets.Add(ExpectName());
            }
        }

        if (Current.Kind == TokenKind.BlockEnd && attribute is null && targets.Count == 1)
        {
            _pos++;
            var body = ParseBody(out _, "endset");
            Expect(TokenKind.BlockEnd);
            return new SetBlockStmt(first, body);
        }

        Expect(TokenKind.Operator, "=");
        var value = ParseExpression();
        Expect(TokenKind.BlockEnd);
        return new SetStmt(targets, attribute, value);
    }

    private MacroStmt ParseMacro()
    {
        var name = ExpectName();
        Expect(TokenKind.Operator, "(");
        var parameters = new List<(string, Expr?)>();
        while (!Current.IsOperator(")"))
        {
            var p = ExpectName();
            Expr? defaultValue = null;
            if (Current.IsOperator("="))
            {
                _pos++;
                defaultValue = ParseExpression();
            }

            parameters.Add((p, defaultValue));
            if (!Current.IsOperator(","))
            {
                break;
            }

            _pos++;
        }

        Expect(TokenKind.Operator, ")");
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(out _, "endmacro");
        Expect(TokenKind.BlockEnd);
        return new MacroStmt(name, parameters, body);
    }

    public Expr ParseExpression(bool allowConditional = true)
    {
        var expr = ParseOr();
        while (allowConditional && Current.IsName("if"))
        {
            _pos++;
            var condition = ParseOr();
            Expr? otherwise = null;
            if (Current.IsName("else"))
            {
                _pos++;
                otherwise = ParseExpression();
            }

            expr = new ConditionalExpr(condition, expr, otherwise);
        }

        return expr;
    }

    private Expr ParseOr() => ParseLeftAssociative(ParseAnd, t => t.IsName("or"), (_, left, right) => new OrExpr(left, right));

    private Expr ParseAnd() => ParseLeftAssociative(ParseNot, t => t.IsName("and"), (_, left, right) => new AndExpr(left, right));

    private Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            _pos++;
            return new NotExpr(ParseNot());
        }

        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var left = ParseMath1();
        while (true)
        {
            var t = Current;
            if (t.Kind == TokenKind.Operator && t.Value is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                _pos++;
                left = new BinaryExpr(t.Value, left, ParseMath1());
            }
            else if (t.IsName("in"))
            {
                _pos++;
                left = new BinaryExpr("in", left, ParseMath1());
            }
            else if (t.IsName("not") && tokens[_pos + 1].IsName("in"))
            {
                _pos += 2;
                left = new NotExpr(new BinaryExpr("in", left, ParseMath1()));
            }
            else
            {
                return left;
            }
        }
    }

    private Expr ParseMath1() => ParseLeftAssociative(ParseConcat, t => t.Kind == TokenKind.Operator && t.Value is "+" or "-", Binary);

    private Expr ParseConcat() => ParseLeftAssociative(ParseMath2, t => t.IsOperator("~"), Binary);

    private Expr ParseMath2() => ParseLeftAssociative(ParsePow, t => t.Kind == TokenKind.Operator && t.Value is "*" or "/" or "//" or "%", Binary);

    private Expr ParsePow() => ParseLeftAssociative(() => ParseUnary(withFilter: true), t => t.IsOperator("**"), Binary);

    private static Expr Binary(string op, Expr left, Expr right) => new BinaryExpr(op, left, right);

    /// <summary>One level of binary operators that group left to right: <c>a op b op c</c> is <c>(a op b) op c</c>.</summary>
    private Expr ParseLeftAssociative(Func<Expr> operand, Func<Token, bool> isOperator, Func<string, Expr, Expr, Expr> combine)
    {
        var left = operand();
        while (isOperator(Current))
        {
            var op = Current.Value;
            _pos++;
            left = combine(op, left, operand());
        }

        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        Expr node;
        if (Current.IsOperator("-"))
        {
            _pos++;
            node = new NegExpr(ParseUnary(withFilter: false));
        }
        else if (Current.IsOperator("+"))
        {
            _pos++;
            node = ParseUnary(withFilter: false);
        }
        else
        {
            node = ParsePostfix(ParsePrimary());
        }

        return withFilter ? ParseFilters(node) : node;
    }

    private Expr ParsePrimary()
    {
        var t = Current;
        _pos++;
        switch (t.Kind)
        {
            case TokenKind.String:
                var text = t.Value;
                while (Current.Kind == TokenKind.String)
                {
                    text += Current.Value;
                    _pos++;
                }

                return new ConstExpr(text);
            case TokenKind.Integer:
                return new ConstExpr(long.Parse(t.Value, CultureInfo.InvariantCulture));
            case TokenKind.Float:
                return new ConstExpr(double.Parse(t.Value, CultureInfo.InvariantCulture));
            case TokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new ConstExpr(true),
                    "false" or "False" => new ConstExpr(false),
                    "none" or "None" => new ConstExpr(null),
                    _ => new NameExpr(t.Value),
                };
            case TokenKind.Operator when t.Value == "(":
                if (Current.IsOperator(")"))
                {
                    _pos++;
                    return new ListExpr([]);
                }

                var first = ParseExpression();
                if (!Current.IsOperator(","))
                {
                    Expect(TokenKind.Operator, ")");
                    return first;
                }

                var items = new List<Expr> { first };
                while (Current.IsOperator(","))
                {
                    _pos++;
                    if (Current.IsOperator(")"))
                    {
                        break;
                    }

                    items.Add(ParseExpression());
                }

                Expect(TokenKind.Operator, ")");
                return new ListExpr(items);
            case TokenKind.Operator when t.Value == "[":
                var list = new List<Expr>();
                while (!Current.IsOperator("]"))
                {
                    list.Add(ParseExpression());
                    if (!Current.IsOperator(","))
                    {
                        break;
                    }

                    _pos++;
                }

                Expect(TokenKind.Operator, "]");
                return new ListExpr(list);
            case TokenKind.Operator when t.Value == "{":
                var pairs = new List<(Expr, Expr)>();
                while (!Current.IsOperator("}"))
                {
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression()));
                    if (!Current.IsOperator(","))
                    {
                        break;
                    }

                    _pos++;
                }

                Expect(TokenKind.Operator, "}");
                return new DictExpr(pairs);
            default:
                _pos--;
                throw Error($"unexpected {t}");
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            if (Current.IsOperator("."))
            {
                _pos++;
                var t = Current;
                _pos++;
                node = t.Kind switch
                {
                    TokenKind.Name => new AttributeExpr(node, t.Value),
                    TokenKind.Integer => new IndexExpr(node, new ConstExpr(long.Parse(t.Value, CultureInfo.InvariantCulture))),
                    _ => throw Error($"expected an attribute name after '.', found {t}"),
                };
            }
            else if (Current.IsOperator("["))
            {
                _pos++;
                node = ParseSubscript(node);
            }
            else if (Current.IsOperator("("))
            {
                node = new CallExpr(node, ParseArguments());
            }
            else
            {
                return node;
            }
        }
    }

    private Expr ParseSubscript(Expr node)
    {
        Expr?[] parts = [null, null, null];
        var index = 0;
        var isSlice = false;
        while (!Current.IsOperator("]"))
        {
            if (Current.IsOperator(":"))
            {
                isSlice = true;
                index++;
                _pos++;
                if (index > 2)
                {
                    throw Error("a slice has at most three parts");
                }

                continue;
            }

            parts[index] = ParseExpression();
        }

        Expect(TokenKind.Operator, "]");
        return isSlice ? new SliceExpr(node, parts[0], parts[1], parts[2]) : new IndexExpr(node, parts[0] ?? throw Error("empty subscript"));
    }

    private Arguments ParseArguments()
    {
        Expect(TokenKind.Operator, "(");
        var positional = new List<Expr>();
        var named = new List<(string, Expr)>();
        while (!Current.IsOperator(")"))
        {
            if (Current.Kind == TokenKind.Name && tokens[_pos + 1].IsOperator("="))
            {
                var name = Current.Value;
                _pos += 2;
                named.Add((name, ParseExpression()));
            }
            else
            {
                positional.Add(ParseExpression());
            }

            if (!Current.IsOperator(","))
            {
                break;
            }

            _pos++;
        }

        Expect(TokenKind.Operator, ")");
        return new Arguments(positional, named);
    }

    private Expr ParseFilters(Expr node)
    {
        while (true)
        {
            if (Current.IsOperator("|"))
            {
                _pos++;
                node = ParseFilterCall(node);
            }
            else if (Current.IsName("is"))
            {
                _pos++;
                var negate = false;
                if (Current.IsName("not"))
                {
                    negate = true;
                    _pos++;
                }

                var test = ExpectName();
                Arguments args;
                if (Current.IsOperator("("))
                {
                    args = ParseArguments();
                }
                else if (Current.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                         || (Current.Kind == TokenKind.Name && Current.Value is not ("else" or "or" or "and" or "if" or "is" or "not" or "in")))
                {
                    args = new Arguments([ParsePostfix(ParsePrimary())], []);
                }
                else
                {
                    args = new Arguments([], []);
                }

                Expr testExpr = new TestExpr(node, test, args);
                node = negate ? new NotExpr(testExpr) : testExpr;
            }
            else
            {
                return node;
            }
        }
    }

    private FilterExpr ParseFilterCall(Expr node)
    {
        var name = ExpectName();
        var args = Current.IsOperator("(") ? ParseArguments() : new Arguments([], []);
        return new FilterExpr(node, name, args);
    }

    private string ExpectName(string? value = null)
    {
        var t = Current;
        if (t.Kind != TokenKind.Name || (value is not null && t.Value != value))
        {
            throw Error($"expected {(value is null ? "a name" : $"'{value}'")}, found {t}");
        }

        _pos++;
        return t.Value;
    }

    private void Expect(TokenKind kind, string? value = null)
    {
        var t = Current;
        if (t.Kind != kind || (value is not null && t.Value != value))
        {
            var wanted = value ?? kind switch
            {
                TokenKind.BlockEnd => "%}",
                TokenKind.VariableEnd => "}}",
                _ => kind.ToString(),
            };
            throw Error($"expected '{wanted}', found {t}");
        }

        _pos++;
    }

    private TemplateSyntaxException Error(string message) => new(message, Current.Position);
}
