// /api/docs: start the vendored Swagger UI on the OpenAPI document served to this session.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("api-docs-config").textContent);
  if (typeof window.SwaggerUIBundle !== "function") {
    document.getElementById("swagger-ui").textContent = "The API reference script did not load.";
    return;
  }
  window.SwaggerUIBundle({
    url: config.spec, dom_id: "#swagger-ui", deepLinking: true,
    // Reading, not calling: "Try it out" would need a token typed into the page.
    supportedSubmitMethods: [], validatorUrl: null, defaultModelsExpandDepth: 0,
  });
})();
