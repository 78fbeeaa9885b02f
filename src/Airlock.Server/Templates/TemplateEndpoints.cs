using Airlock.Core.Templates;
using Airlock.Server.Http;

namespace Airlock.Server.Templates;

internal static class TemplateEndpoints
{
    public static IEndpointRouteBuilder MapTemplates(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/templates", (TemplateService templates) =>
            TypedResults.Json(Describe(templates), ApiJsonContext.Default.ListTemplateDto));
        return app;
    }

    public static List<TemplateDto> Describe(TemplateService templates) =>
        templates.Specs.Select(spec =>
        {
            var status = templates.GetStatus(spec.Name);
            var ready = status?.Status == TemplateStatus.Ready || IsReady(templates, spec.Name);
            return new TemplateDto(spec.Name, spec.Hash(), ready ? "ready" : (status?.Status.ToString().ToLowerInvariant() ?? "pending"), status?.Error);
        }).OrderBy(t => t.Name, StringComparer.Ordinal).ToList();

    private static bool IsReady(TemplateService templates, string name)
    {
        try
        {
            templates.GetReady(name);
            return true;
        }
        catch (Core.AirlockException)
        {
            return false;
        }
    }
}
