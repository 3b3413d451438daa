"""llmops.dev API models, CRD generation, the renderer and the kopf operator."""
