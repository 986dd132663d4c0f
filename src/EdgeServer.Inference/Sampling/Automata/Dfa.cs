namespace EdgeServer.Inference.Sampling.Automata;

/// <summary>An automaton would grow past its bounds; the message says which.</summary>
internal sealed class AutomatonLimitException(string message) : Exception(message);

/// <summary>
/// Steps of construction (states visited times transitions) shared by all automata of one grammar, so no schema,
/// however many patterns it holds, takes long to build or to refuse.
/// </summary>
internal sealed class AutomatonBudget(long steps = AutomatonBudget.DefaultSteps)
{
    public const long DefaultSteps = 10_000_000;

    private long _left = steps;

    public void Spend(long steps)
    {
        _left -= steps;
        if (_left < 0)
        {
            throw new AutomatonLimitException("building it takes too many steps (the schema's patterns, formats and ranges share one budget)");
        }
    }
}

/// <summary>
/// A deterministic automaton over ranges of characters: from each state, each character leads to at most one
/// state. Written as a grammar, llama.cpp then follows exactly one path however the text so far was written,
/// which keeps its work per token small; and automata can be intersected, which a grammar cannot (a pattern
/// with a length limit, a number range that must also be a multiple of something).
/// Every state can reach an accepting one once <see cref="Minimize"/> has run, so a grammar made from it never
/// leads the model into a dead end. Sizes and work are bounded: past them, <see cref="AutomatonLimitException"/>.
/// </summary>
internal sealed class Dfa
{
    /// <summary>States of the intermediate (nondeterministic) automaton: a repetition count copies what it repeats.</summary>
    public const int MaxNfaStates = 20_000;

    /// <summary>States while building, before <see cref="Minimize"/> (a product of a range and a remainder is large, its minimum small).</summary>
    public const int MaxStates = 25_000;

    /// <summary>Cells of the table minimizing works on (states times character classes), which bounds its memory.</summary>
    private const long MaxTableCells = 2_000_000;

    private Dfa(List<(CharSet Set, int Target)>[] transitions, bool[] accepting)
    {
        Transitions = transitions;
        Accepting = accepting;
    }

    /// <summary>Per state, its transitions; the sets of one state are disjoint. State 0 is the start.</summary>
    public IReadOnlyList<List<(CharSet Set, int Target)>> Transitions { get; }

    public IReadOnlyList<bool> Accepting { get; }

    public int Count => Accepting.Count;

    /// <summary>Whether no string is accepted (after <see cref="Minimize"/>: no states at all).</summary>
    public bool IsEmpty => Count == 0;

    public static Dfa FromRegex(RegexNode node, AutomatonBudget budget)
    {
        var nfa = new Nfa();
        var (start, end) = nfa.Build(node);
        budget.Spend(nfa.Count);
        return nfa.Determinize(start, end, budget);
    }

    /// <summary>A deterministic automaton whose transitions are built directly: <paramref name="next"/> gives each state's.</summary>
    public static Dfa Build(int count, Func<int, IEnumerable<(CharSet Set, int Target)>> next, Func<int, bool> accepting)
    {
        if (count > MaxStates)
        {
            throw new AutomatonLimitException($"it needs more than {MaxStates} states");
        }

        var transitions = new List<(CharSet, int)>[count];
        var accept = new bool[count];
        for (var s = 0; s < count; s++)
        {
            transitions[s] = [.. next(s).Where(t => !t.Set.IsEmpty)];
            accept[s] = accepting(s);
        }

        return new Dfa(transitions, accept);
    }

    /// <summary>The strings both automata accept.</summary>
    public Dfa Intersect(Dfa other, AutomatonBudget budget)
    {
        if (IsEmpty || other.IsEmpty)
        {
            return new Dfa([], []);
        }

        var ids = new Dictionary<(int, int), int> { [(0, 0)] = 0 };
        var queue = new List<(int A, int B)> { (0, 0) };
        var transitions = new List<List<(CharSet, int)>>();
        var accepting = new List<bool>();
        for (var i = 0; i < queue.Count; i++)
        {
            var (a, b) = queue[i];
            budget.Spend(1 + (long)Transitions[a].Count * other.Transitions[b].Count);
            var merged = new Dictionary<int, CharSet>();
            foreach (var (setA, toA) in Transitions[a])
            {
                foreach (var (setB, toB) in other.Transitions[b])
                {
                    var both = setA.Intersect(setB);
                    if (both.IsEmpty)
                    {
                        continue;
                    }

                    if (!ids.TryGetValue((toA, toB), out var id))
                    {
                        if (queue.Count >= MaxStates)
                        {
                            throw new AutomatonLimitException($"it needs more than {MaxStates} states");
                        }

                        ids[(toA, toB)] = id = queue.Count;
                        queue.Add((toA, toB));
                    }

                    merged[id] = merged.TryGetValue(id, out var known) ? known.Union(both) : both;
                }
            }

            transitions.Add([.. merged.Select(m => (m.Value, m.Key))]);
            accepting.Add(Accepting[a] && other.Accepting[b]);
        }

        return new Dfa([.. transitions], [.. accepting]);
    }

    /// <summary>The strings this automaton does not accept (a lookahead that must not match).</summary>
    public Dfa Complement(AutomatonBudget budget)
    {
        var n = Count;
        budget.Spend(n + 1);
        if (n + 1 > MaxStates)
        {
            throw new AutomatonLimitException($"it needs more than {MaxStates} states");
        }

        var sink = n; // every character no transition reads leads here, and stays
        var transitions = new List<(CharSet, int)>[n + 1];
        var accepting = new bool[n + 1];
        for (var s = 0; s < n; s++)
        {
            var covered = CharSet.Empty;
            transitions[s] = [];
            foreach (var (set, target) in Transitions[s])
            {
                transitions[s].Add((set, target));
                covered = covered.Union(set);
            }

            var rest = CharSet.All.Subtract(covered);
            if (!rest.IsEmpty)
            {
                transitions[s].Add((rest, sink));
            }

            accepting[s] = !Accepting[s];
        }

        transitions[sink] = [(CharSet.All, sink)];
        accepting[sink] = true;
        return new Dfa(transitions, accepting);
    }

    /// <summary>
    /// The smallest automaton for the same strings, without states that cannot reach an accepting one (and so
    /// with no states when nothing is accepted). Hopcroft's partition refinement.
    /// </summary>
    public Dfa Minimize(AutomatonBudget budget)
    {
        // Keep the states from which an accepting state can be reached.
        var n = Count;
        var reverse = new List<int>[n];
        for (var s = 0; s < n; s++)
        {
            reverse[s] = [];
        }

        for (var s = 0; s < n; s++)
        {
            foreach (var (_, t) in Transitions[s])
            {
                reverse[t].Add(s);
            }
        }

        var live = new bool[n];
        var stack = new Stack<int>();
        for (var s = 0; s < n; s++)
        {
            if (Accepting[s])
            {
                live[s] = true;
                stack.Push(s);
            }
        }

        while (stack.Count > 0)
        {
            foreach (var p in reverse[stack.Pop()])
            {
                if (!live[p])
                {
                    live[p] = true;
                    stack.Push(p);
                }
            }
        }

        if (n == 0 || !live[0])
        {
            return new Dfa([], []);
        }

        // One alphabet for all states: the pieces every transition's set is cut into.
        var cuts = new SortedSet<int>();
        for (var s = 0; s < n; s++)
        {
            foreach (var (set, t) in Transitions[s])
            {
                if (live[s] && live[t])
                {
                    foreach (var (lo, hi) in set.Ranges)
                    {
                        cuts.Add(lo);
                        cuts.Add(hi + 1);
                    }
                }
            }
        }

        var bounds = cuts.ToArray();
        var m = Math.Max(bounds.Length - 1, 0);
        var dead = n; // all missing transitions lead here
        if ((long)(n + 1) * m > MaxTableCells)
        {
            throw new AutomatonLimitException($"minimizing its {n} states over {m} character classes needs too large a table");
        }

        budget.Spend((long)(n + 1) * m);

        var delta = new int[(n + 1) * m];
        Array.Fill(delta, dead);
        for (var s = 0; s < n; s++)
        {
            foreach (var (set, t) in Transitions[s])
            {
                if (!live[s] || !live[t])
                {
                    continue;
                }

                foreach (var (lo, hi) in set.Ranges)
                {
                    for (var a = Array.BinarySearch(bounds, lo); a < m && bounds[a] <= hi; a++)
                    {
                        delta[s * m + a] = t;
                    }
                }
            }
        }

        var blockOf = Refine(n + 1, m, delta, s => s < n && live[s] && Accepting[s], s => s < n && live[s], budget);

        // Renumber blocks from the start, in the order they are reached; the dead block gets none.
        var number = new Dictionary<int, int> { [blockOf[0]] = 0 };
        var order = new List<int> { 0 };
        for (var i = 0; i < order.Count; i++)
        {
            var s = order[i];
            for (var a = 0; a < m; a++)
            {
                var t = delta[s * m + a];
                if (t != dead && number.TryAdd(blockOf[t], number.Count))
                {
                    order.Add(t);
                }
            }
        }

        var transitions = new List<(CharSet, int)>[order.Count];
        var accepting = new bool[order.Count];
        for (var i = 0; i < order.Count; i++)
        {
            var s = order[i];
            accepting[i] = Accepting[s];
            var byTarget = new SortedDictionary<int, List<(int, int)>>();
            for (var a = 0; a < m; a++)
            {
                var t = delta[s * m + a];
                if (t == dead)
                {
                    continue;
                }

                var target = number[blockOf[t]];
                if (!byTarget.TryGetValue(target, out var ranges))
                {
                    byTarget[target] = ranges = [];
                }

                ranges.Add((bounds[a], bounds[a + 1] - 1));
            }

            transitions[i] = [.. byTarget.Select(b => (CharSet.From(b.Value), b.Key))];
        }

        return new Dfa(transitions, accepting);
    }

    /// <summary>
    /// Hopcroft's algorithm: the coarsest partition of states that no symbol tells apart. Blocks are ranges of
    /// one array of states, split in place, so each step costs what it reads.
    /// </summary>
    private static int[] Refine(int n, int m, int[] delta, Func<int, bool> accepting, Func<int, bool> live, AutomatonBudget budget)
    {
        // Predecessors per symbol, as one array: for symbol a and state t, sources[start[a*n+t] .. start[a*n+t+1]).
        var start = new int[n * m + 1];
        for (var s = 0; s < n; s++)
        {
            for (var a = 0; a < m; a++)
            {
                start[a * n + delta[s * m + a] + 1]++;
            }
        }

        for (var i = 1; i < start.Length; i++)
        {
            start[i] += start[i - 1];
        }

        var sources = new int[n * m];
        var fill = (int[])start.Clone();
        for (var s = 0; s < n; s++)
        {
            for (var a = 0; a < m; a++)
            {
                sources[fill[a * n + delta[s * m + a]]++] = s;
            }
        }

        // Blocks: accepting, live non-accepting, dead (the dead state and those that cannot reach acceptance).
        var kind = new int[n];
        for (var s = 0; s < n; s++)
        {
            kind[s] = accepting(s) ? 0 : live(s) ? 1 : 2;
        }

        var elements = Enumerable.Range(0, n).OrderBy(s => kind[s]).ToArray();
        var position = new int[n];
        var blockOf = new int[n];
        var blockStart = new List<int>();
        var blockEnd = new List<int>();
        for (var i = 0; i < n; i++)
        {
            var s = elements[i];
            position[s] = i;
            if (i == 0 || kind[s] != kind[elements[i - 1]])
            {
                blockStart.Add(i);
                blockEnd.Add(i);
            }

            blockOf[s] = blockStart.Count - 1;
            blockEnd[^1] = i + 1;
        }

        var pending = new Stack<int>();
        var queued = new List<bool>();
        for (var b = 0; b < blockStart.Count; b++)
        {
            pending.Push(b);
            queued.Add(true);
        }

        var marked = new List<int>(blockStart.Count);
        marked.AddRange(Enumerable.Repeat(0, blockStart.Count));
        var touched = new List<int>();
        var splitter = new List<int>();
        while (pending.Count > 0)
        {
            var block = pending.Pop();
            queued[block] = false;
            splitter.Clear();
            for (var i = blockStart[block]; i < blockEnd[block]; i++)
            {
                splitter.Add(elements[i]);
            }

            for (var a = 0; a < m; a++)
            {
                // Move the states that lead into the splitter to the front of their blocks.
                foreach (var t in splitter)
                {
                    budget.Spend(start[a * n + t + 1] - start[a * n + t] + 1);
                    for (var k = start[a * n + t]; k < start[a * n + t + 1]; k++)
                    {
                        var s = sources[k];
                        var b = blockOf[s];
                        var front = blockStart[b] + marked[b];
                        if (position[s] < front)
                        {
                            continue; // already moved
                        }

                        var other = elements[front];
                        (elements[front], elements[position[s]]) = (s, other);
                        (position[other], position[s]) = (position[s], front);
                        if (marked[b]++ == 0)
                        {
                            touched.Add(b);
                        }
                    }
                }

                foreach (var b in touched)
                {
                    var count = marked[b];
                    marked[b] = 0;
                    if (count == blockEnd[b] - blockStart[b])
                    {
                        continue;
                    }

                    // Split b: its moved states become a new block.
                    var fresh = blockStart.Count;
                    blockStart.Add(blockStart[b]);
                    blockEnd.Add(blockStart[b] + count);
                    blockStart[b] += count;
                    marked.Add(0);
                    queued.Add(false);
                    for (var i = blockStart[fresh]; i < blockEnd[fresh]; i++)
                    {
                        blockOf[elements[i]] = fresh;
                    }

                    if (queued[b])
                    {
                        pending.Push(fresh);
                        queued[fresh] = true;
                    }
                    else
                    {
                        var smaller = blockEnd[b] - blockStart[b] <= count ? b : fresh;
                        pending.Push(smaller);
                        queued[smaller] = true;
                    }
                }

                touched.Clear();
            }
        }

        return blockOf;
    }

    /// <summary>Thompson's construction, then the subset construction over ranges.</summary>
    private sealed class Nfa
    {
        private readonly List<List<int>> _epsilon = [];
        private readonly List<List<(CharSet Set, int Target)>> _edges = [];

        public int Count => _edges.Count;

        private int NewState()
        {
            if (_edges.Count >= MaxNfaStates)
            {
                throw new AutomatonLimitException($"it expands to more than {MaxNfaStates} states (repetition counts multiply what they repeat)");
            }

            _epsilon.Add([]);
            _edges.Add([]);
            return _edges.Count - 1;
        }

        public (int Start, int End) Build(RegexNode node)
        {
            switch (node)
            {
                case RegexChars chars:
                {
                    var (s, e) = (NewState(), NewState());
                    if (!chars.Set.IsEmpty)
                    {
                        _edges[s].Add((chars.Set, e));
                    }

                    return (s, e);
                }

                case RegexSequence sequence:
                {
                    var s = NewState();
                    var current = s;
                    foreach (var part in sequence.Parts)
                    {
                        var (ps, pe) = Build(part);
                        _epsilon[current].Add(ps);
                        current = pe;
                    }

                    return (s, current);
                }

                case RegexChoice choice:
                {
                    var (s, e) = (NewState(), NewState());
                    foreach (var option in choice.Options)
                    {
                        var (os, oe) = Build(option);
                        _epsilon[s].Add(os);
                        _epsilon[oe].Add(e);
                    }

                    return (s, e);
                }

                case RegexRepeat repeat:
                {
                    var s = NewState();
                    var current = s;
                    for (var i = 0; i < repeat.Min; i++)
                    {
                        var (ps, pe) = Build(repeat.Item);
                        _epsilon[current].Add(ps);
                        current = pe;
                    }

                    if (repeat.Max is not { } max)
                    {
                        var loop = NewState();
                        _epsilon[current].Add(loop);
                        var (ps, pe) = Build(repeat.Item);
                        _epsilon[loop].Add(ps);
                        _epsilon[pe].Add(loop);
                        return (s, loop);
                    }

                    // Each optional copy may be skipped to the end: nested, so a state set stays small.
                    var end = NewState();
                    for (var i = repeat.Min; i < max; i++)
                    {
                        _epsilon[current].Add(end);
                        var (ps, pe) = Build(repeat.Item);
                        _epsilon[current].Add(ps);
                        current = pe;
                    }

                    _epsilon[current].Add(end);
                    return (s, end);
                }

                default:
                    throw new InvalidOperationException("Unknown regular expression node " + node.GetType().Name);
            }
        }

        public Dfa Determinize(int start, int end, AutomatonBudget budget)
        {
            var n = _edges.Count;
            var seen = new int[n];
            var stamp = 0;
            var stack = new Stack<int>();

            int[] Closure(IEnumerable<int> seeds)
            {
                stamp++;
                var result = new List<int>();
                foreach (var f in seeds)
                {
                    if (seen[f] != stamp)
                    {
                        seen[f] = stamp;
                        stack.Push(f);
                    }
                }

                while (stack.Count > 0)
                {
                    var s = stack.Pop();
                    budget.Spend(1);
                    if (_edges[s].Count > 0 || s == end)
                    {
                        result.Add(s); // states with only epsilon moves decide nothing themselves
                    }

                    foreach (var t in _epsilon[s])
                    {
                        if (seen[t] != stamp)
                        {
                            seen[t] = stamp;
                            stack.Push(t);
                        }
                    }
                }

                result.Sort();
                return [.. result];
            }

            var ids = new Dictionary<int[], int>(new SequenceComparer());
            var sets = new List<int[]> { Closure([start]) };
            ids[sets[0]] = 0;
            var transitions = new List<List<(CharSet, int)>>();
            var accepting = new List<bool>();
            for (var i = 0; i < sets.Count; i++)
            {
                var set = sets[i];
                accepting.Add(Array.BinarySearch(set, end) >= 0);
                var edges = set.SelectMany(s => _edges[s]).ToList();
                var cuts = new List<int>(edges.Count * 2);
                foreach (var (chars, _) in edges)
                {
                    foreach (var (lo, hi) in chars.Ranges)
                    {
                        cuts.Add(lo);
                        cuts.Add(hi + 1);
                    }
                }

                cuts.Sort();
                var bounds = cuts.Distinct().ToArray();
                var targets = new List<int>?[Math.Max(bounds.Length - 1, 0)];
                long steps = set.Length + edges.Count + targets.Length;
                foreach (var (chars, target) in edges)
                {
                    foreach (var (lo, hi) in chars.Ranges)
                    {
                        for (var a = Array.BinarySearch(bounds, lo); a < targets.Length && bounds[a] <= hi; a++)
                        {
                            (targets[a] ??= []).Add(target);
                            steps++;
                        }
                    }
                }

                budget.Spend(steps);

                var byTarget = new Dictionary<int, List<(int, int)>>();
                var order = new List<int>();
                int[]? previous = null;
                var previousId = -1;
                for (var a = 0; a < targets.Length; a++)
                {
                    if (targets[a] is not { } list)
                    {
                        continue;
                    }

                    // Neighbouring pieces often lead to the same states: close over them once.
                    var key = list.Distinct().Order().ToArray();
                    int id;
                    if (previous is not null && key.AsSpan().SequenceEqual(previous))
                    {
                        id = previousId;
                    }
                    else
                    {
                        var closure = Closure(key);
                        budget.Spend(key.Length + closure.Length); // sorting and hashing them
                        if (!ids.TryGetValue(closure, out id))
                        {
                            if (sets.Count >= MaxStates)
                            {
                                throw new AutomatonLimitException($"it needs more than {MaxStates} states");
                            }

                            ids[closure] = id = sets.Count;
                            sets.Add(closure);
                        }

                        (previous, previousId) = (key, id);
                    }

                    if (!byTarget.TryGetValue(id, out var ranges))
                    {
                        byTarget[id] = ranges = [];
                        order.Add(id);
                    }

                    ranges.Add((bounds[a], bounds[a + 1] - 1));
                }

                transitions.Add([.. order.Select(id => (CharSet.From(byTarget[id]), id))]);
            }

            return new Dfa([.. transitions], [.. accepting]);
        }
    }

    private sealed class SequenceComparer : IEqualityComparer<int[]>
    {
        public bool Equals(int[]? x, int[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(int[] obj)
        {
            var hash = new HashCode();
            foreach (var v in obj)
            {
                hash.Add(v);
            }

            return hash.ToHashCode();
        }
    }
}
