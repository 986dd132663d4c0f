using System.Text.Json;

namespace EdgeServer.Tests.Device;

/// <summary>The server on a fake sysfs tree with a 100 W power supply: every generation reports its energy.</summary>
public sealed class EnergyServerFixture : ServerFixture
{
    private string? _sysfs;

    protected override IEnumerable<string> ExtraArguments(string scratch)
    {
        _sysfs = Path.Combine(scratch, "sysfs-" + Guid.NewGuid().ToString("N")[..8]);
        var supply = Directory.CreateDirectory(Path.Combine(_sysfs, "class", "power_supply", "usb")).FullName;
        File.WriteAllText(Path.Combine(supply, "type"), "USB\n");
        File.WriteAllText(Path.Combine(supply, "power_now"), "100000000\n");
        return ["--EdgeServer:Energy:Enabled=true", $"--EdgeServer:Energy:SysfsRoot={_sysfs}"];
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (_sysfs is not null)
        {
            Directory.Delete(_sysfs, recursive: true);
        }
    }
}

/// <summary>
/// usage.energy_joules: present where the box measures energy (an extension OpenAI's schema allows) and in the
/// request log line (its absence without a sensor: OperationsTests).
/// </summary>
public sealed class EnergyHttpTests(EnergyServerFixture energy) : IClassFixture<EnergyServerFixture>
{
    private const string Chat = """{"model":"successor","messages":[{"role":"user","content":"how much energy?"}],"temperature":0,"max_tokens":4}""";

    [Fact]
    public async Task AMeasuredGenerationReportsItsJoulesInUsageAndInTheRequestLine()
    {
        var earlier = energy.Logs.Entries.Count;
        var body = await energy.PostOkAsync("/v1/chat/completions", Chat);
        energy.AssertMatchesSchema("CreateChatCompletionResponse", body);
        using var json = JsonDocument.Parse(body);
        var usage = json.RootElement.GetProperty("usage");
        Assert.Equal(4, usage.GetProperty("completion_tokens").GetInt32());
        Assert.True(usage.GetProperty("energy_joules").GetDouble() > 0, body);
        Assert.Contains(energy.Logs.Entries.Skip(earlier), e => e.EventId == 7000 && e.Message.Contains("energy_j=", StringComparison.Ordinal)
            && !e.Message.Contains("energy_j=unavailable", StringComparison.Ordinal) && !e.Message.Contains("j_per_token=unavailable", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AStreamReportsTheJoulesInItsUsageChunk()
    {
        var body = await energy.PostOkAsync("/v1/chat/completions", Chat.Replace("\"max_tokens\":4", "\"max_tokens\":4,\"stream\":true,\"stream_options\":{\"include_usage\":true}", StringComparison.Ordinal));
        using var last = JsonDocument.Parse(InProcessServer.SseData(body)[^1]);
        energy.AssertMatchesSchema("CreateChatCompletionStreamResponse", last.RootElement.GetRawText());
        Assert.True(last.RootElement.GetProperty("usage").GetProperty("energy_joules").GetDouble() > 0, body);
    }
}
