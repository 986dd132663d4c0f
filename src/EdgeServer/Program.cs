using EdgeServer.Hosting;

var app = EdgeServerHosting.CreateBuilder(args).Build();
app.MapEdgeServer();
app.Run();

/// <summary>Entry point; public so functional tests can reference the assembly.</summary>
public partial class Program;
