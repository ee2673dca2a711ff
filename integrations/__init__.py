"""Agent integrations of cpq-guard: LangGraph nodes, a LangChain tool, agent middleware.

The modules are imported one by one, and each needs only what it integrates
with:

- `integrations.results`: a `GuardResult` as JSON data for graph state, tool
  output and message metadata (needs only cpq-guard).
- `integrations.escalation`: what a human reviewer is shown when the guard
  abstains, and how the reviewer's reply is read (needs only cpq-guard).
- `integrations.langgraph`: nodes and a router for LangGraph graphs, with
  human review through ``interrupt`` (needs ``langgraph``).
- `integrations.tools`: a guard as a LangChain tool (needs only ``langchain-core``).
- `integrations.agent_middleware`: middleware for ``langchain.agents.create_agent``
  that guards the agent's final answers (needs ``langchain``).

Install the optional dependencies with ``pip install "cpq-guard[langgraph]"``.
The core package ``cpq_guard`` never imports this package.
"""
