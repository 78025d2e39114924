"""The small language-model policy: prompt, model, controller, training and the agent."""
