import matplotlib.pyplot as plt

labels = ["Central", "North", "East", "Coast"]
values = [60, 39, 43, 40]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.bar(labels, values, color="#4C72B0")
ax.set_title("Units sold by region")
ax.set_ylabel("Units")
plt.tight_layout()
plt.show()
