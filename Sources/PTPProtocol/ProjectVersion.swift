/// The version of this project's programs, in one place: `--version` of `ptpchat-relay` and
/// `ptpchat`, and the `version` of the HELLOs they send.
public enum ProjectVersion {
    public static let number = "0.1.0"
}
