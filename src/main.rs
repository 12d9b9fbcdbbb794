fn main() -> anyhow::Result<()> {
    meter_gateway::cli::main()
}
